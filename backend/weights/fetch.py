"""Moving bytes for the weights manager: resumable HTTP downloads, hashing and hashed copies.

Nothing here knows the registry or the record; ``backend.weights.manager`` decides what to fetch and what it means.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from backend.errors import BackendError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_hashing(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` (created or truncated) in one pass; returns the hex SHA-256 of what was copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(target, "wb") as writer:
        for block in iter(lambda: reader.read(CHUNK), b""):
            digest.update(block)
            writer.write(block)
    return digest.hexdigest()


def fetch(url: str, part: Path, size: int | None, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (HTTP Range from its current size); restart if Range is ignored.

    Raises:
        BackendError("weights"): an HTTP error status (``exc.__cause__`` is the ``HTTPError``) or a dropped
            connection (the partial file is kept so that the next call resumes).
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset == size:
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if offset and response.status != 206:
                log.info("server ignored the Range request; restarting %s from the beginning", part.name)
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            with open(part, "ab" if offset else "wb") as sink, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=part.name.removesuffix(".part"), disable=not progress, file=sys.stderr) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    sink.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size < total:
                # http.client returns b"" rather than raising when the server closes early.
                raise http.client.IncompleteRead(b"", total - part.stat().st_size)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the .part already holds the whole file
            return
        raise BackendError("weights", f"download failed: HTTP {exc.code} {exc.reason} for {url}",
                           "check the URL and your connection, then run the same command again") from exc
    except (OSError, http.client.HTTPException) as exc:
        got = part.stat().st_size if part.exists() else 0
        raise BackendError("weights", f"download interrupted after {got} bytes: {exc}",
                           "run the same command again to resume where it stopped") from exc
