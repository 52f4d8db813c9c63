"""The weights folder's record of what each file is: its SHA-256 and whether that matches the published one.

``weights-record.json`` beside the files maps each file's path inside the folder to the hash computed when it
was downloaded, imported or verified, with the size and modification time it had then. A file's status is:

* ``verified``: its recorded hash equals the published SHA-256;
* ``unverified``: no SHA-256 is published for it (its own hash is recorded, so it can be compared by hand);
* ``mismatch``: its recorded hash differs from the published one: it is *not* the published file;
* ``unchecked``: no record, or the file changed since it was hashed (put there by hand), and a SHA-256 is
  published: ``weights verify`` hashes it.

Hashing a 2.5 GB file takes seconds, so listing never hashes; it trusts the record while size and modification
time are unchanged. The record is rewritten atomically (temporary file + rename); an unreadable record is
treated as empty (files become ``unchecked``) and replaced at the next write; a folder that cannot be written
(read-only, shared) only loses the record, never the answer.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backend.files.bounded_json import JsonLimitError, loads_bounded
from backend.files.scratch import create_scratch

log = logging.getLogger(__name__)

RECORD_NAME = "weights-record.json"
RECORD_VERSION = 1


@dataclass(frozen=True)
class FileCheck:
    """What is known about one file in the weights folder.

    Attributes:
        relpath: its path inside the weights folder.
        status: "verified", "unverified", "mismatch", "unchecked" or "missing".
        sha256: the recorded hash of the file as it is now (None when missing or unchecked).
        expected: the published hash, None if none is published.
    """

    relpath: str
    status: str
    sha256: str | None
    expected: str | None


def status_for(actual: str, expected: str | None) -> str:
    """``verified``/``mismatch`` against a published hash, ``unverified`` without one."""
    if expected is None:
        return "unverified"
    return "verified" if actual == expected.lower() else "mismatch"


def read(folder: Path) -> dict[str, dict[str, Any]]:
    """The record's entries (relpath → entry); empty when there is none or it cannot be read."""
    path = folder / RECORD_NAME
    try:
        data = loads_bounded(path.read_bytes())  # a hand-edited record nested 100000 deep crashed `weights list`
    except FileNotFoundError:
        return {}
    except (OSError, JsonLimitError) as exc:
        log.warning("ignoring the unreadable weights record %s (%s); `weights verify` rewrites it", path, exc)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        log.warning("ignoring the weights record %s: no 'files' table", path)
        return {}
    return {k: v for k, v in files.items() if isinstance(v, dict)}


def _write(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    text = json.dumps({"version": RECORD_VERSION, "files": files}, indent=2, sort_keys=True)
    fd, tmp = create_scratch(folder, prefix=f".{RECORD_NAME}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, folder / RECORD_NAME)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remember(folder: Path, relpath: str, *, sha256: str, expected: str | None, name: str | None,
             source: str) -> str:
    """Record the hash of ``folder/relpath`` as it is now; returns its status.

    Args:
        folder: the weights folder.
        relpath: the file's path inside it (POSIX separators).
        sha256: its hash, just computed.
        expected: the published hash, None if none is published.
        name: the registry name it was stored as, None for a file kept under its own name.
        source: what wrote it: "download", "import: /original/path" or "verify".
    """
    stat = (folder / relpath).stat()
    status = status_for(sha256, expected)
    files = read(folder)
    files[relpath] = {"name": name, "sha256": sha256, "expected": expected, "status": status,
                      "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "source": source,
                      "checked": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        _write(folder, files)
    except OSError as exc:  # a read-only shared folder: the answer stands, it is just not remembered
        log.warning("cannot update the weights record in %s (%s); the file's status is %s", folder, exc, status)
    return status


def check(folder: Path, relpath: str, expected: str | None, files: dict[str, dict[str, Any]]) -> FileCheck:
    """The status of ``folder/relpath`` from the record ``files`` (from ``read``), without hashing it."""
    path = folder / relpath
    if not path.is_file():
        return FileCheck(relpath, "missing", None, expected)
    entry = files.get(relpath) or {}
    stat = path.stat()
    sha256 = entry.get("sha256")
    if not isinstance(sha256, str) or entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
        # Without a published hash there is nothing to verify against: hashing would not change the answer.
        return FileCheck(relpath, "unverified" if expected is None else "unchecked", None, expected)
    return FileCheck(relpath, status_for(sha256, expected), sha256, expected)
