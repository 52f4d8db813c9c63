"""The base-weights manager: one cache folder of known CLIP/SAM weights and tokenizer files; import, download, verify.

The folder is ``$RSREFSEG2_WEIGHTS_DIR`` if set, else the platform's cache folder (``%LOCALAPPDATA%\\rsrefseg2``
on Windows, ``~/Library/Caches/rsrefseg2`` on macOS, ``$XDG_CACHE_HOME/rsrefseg2`` or ``~/.cache/rsrefseg2``
elsewhere). What each file is stays recorded beside the files (``backend.weights.record``): verified against its
published SHA-256, unverified (none is published), mismatch (not the published file: never used or listed as it)
or unchecked (not hashed yet: ``weights verify``). Downloads are resumable (HTTP Range on a ``.part`` file) and
renamed into place atomically; an existing file is never replaced unless ``force`` is given. Nothing here loads
a weight file; ``backend.model.checkpoint.io`` does that.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from backend.errors import BackendError
from backend.files.lock import folder_locks
from backend.files.scratch import create_scratch
from backend.files.stale import owned_prefix, sweep
from backend.protocol import WEIGHTS_DIR_ENV, weights_dir
from backend.weights import record
from backend.weights.fetch import copy_hashing, fetch, sha256_file
from backend.weights.record import FileCheck
from backend.weights.registry import REGISTRY, Entry, FolderEntry, WeightsEntry, WeightsFile

# Scratch copies of imports being installed: .rsrefseg-import-<host>-<pid>-<random>.part beside the target.
IMPORT_PREFIX = ".rsrefseg-import-"

__all__ = ["REGISTRY", "Entry", "FolderEntry", "Presence", "WeightsEntry", "WeightsFile", "download",
           "import_file", "installed", "inventory", "resolve", "sha256_file", "tokenizer_dir", "verify",
           "weights_dir"]

log = logging.getLogger(__name__)

# The worst file decides an entry's status.
_SEVERITY = ("verified", "unverified", "unchecked", "mismatch")


@dataclass(frozen=True)
class Presence:
    """An entry's state in the weights folder.

    Attributes:
        name: the registry name.
        path: its file (or folder) when every required file is there, else None.
        status: "missing", or the worst of its present files' statuses (``weights.record``).
        files: the status of each of its files.
    """

    name: str
    path: Path | None
    status: str
    files: tuple[FileCheck, ...]


def _entry(name: str) -> Entry:
    if name not in REGISTRY:
        raise BackendError("weights", f"unknown weights name {name!r}",
                           f"known names: {', '.join(REGISTRY)} (see `python -m backend weights list`)")
    return REGISTRY[name]


def _presence(entry: Entry, folder: Path, files: dict) -> Presence:
    checks = tuple(record.check(folder, f.relpath, f.sha256, files) for f in entry.files)
    complete = all(c.status != "missing" for c, f in zip(checks, entry.files, strict=True) if f.required)
    present = [c.status for c in checks if c.status != "missing"]
    status = max(present, key=_SEVERITY.index) if complete and present else "missing"
    return Presence(entry.name, folder / entry.location if complete else None, status, checks)


def inventory(directory: Path | None = None) -> dict[str, Presence]:
    """Registry name → its state in the weights folder (from the record; nothing is hashed)."""
    folder = directory or weights_dir()
    files = record.read(folder)
    return {name: _presence(entry, folder, files) for name, entry in REGISTRY.items()}


def installed(directory: Path | None = None) -> dict[str, Path | None]:
    """Registry name → its file (or folder) if present and not known to differ from the published one, else None."""
    return {name: p.path if p.status != "mismatch" else None for name, p in inventory(directory).items()}


def _usable(name: str, folder: Path) -> Path:
    """The present file or folder of ``name``; a "weights" error when it is missing or a recorded mismatch."""
    entry = _entry(name)
    presence = _presence(entry, folder, record.read(folder))
    if presence.status == "mismatch":
        bad = next(c for c in presence.files if c.status == "mismatch")
        raise BackendError("weights", f"{folder / bad.relpath} is not the published {name}: its SHA-256 {bad.sha256}"
                                      f" differs from the published {bad.expected}",
                           f"pass that file's path explicitly to use it anyway, or replace it with "
                           f"`python -m backend weights download {name} --force`")
    if presence.path is None:
        missing = next(f.relpath for f, c in zip(entry.files, presence.files, strict=True)
                       if f.required and c.status == "missing")
        folder_entry = isinstance(entry, FolderEntry)
        what = (f"the tokenizer file {folder / missing} ({name}) is missing" if folder_entry else
                f"weights {name!r} are not in the weights folder {folder} ({missing} is missing)")
        raise BackendError("weights", what,
                           f"run `python -m backend weights download {name}`, or import a local "
                           f"{'folder' if folder_entry else 'file'} with `python -m backend weights import "
                           f"{'FOLDER' if folder_entry else 'FILE'} --name {name}`")
    return presence.path


def resolve(name_or_path: str, directory: Path | None = None) -> Path:
    """Turn a user's weights option into a file path.

    Args:
        name_or_path: an existing file path, or a registry name (looked up in the weights folder).
        directory: the weights folder; default ``weights_dir()``.

    Returns:
        The path of an existing file (a folder for a tokenizer name).

    Raises:
        BackendError("weights"): neither an existing file nor a present registry entry, or the folder's file
            for that name is recorded as not matching the published hash.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if name_or_path in REGISTRY:
        return _usable(name_or_path, directory or weights_dir())
    raise BackendError("weights", f"weights file not found: {name_or_path}",
                       f"give an existing file or one of {', '.join(REGISTRY)}")


def tokenizer_dir(name: str, directory: Path | None = None) -> Path:
    """The folder holding the tokenizer files of registry entry ``name`` (e.g. "siglip2-tokenizer").

    Raises:
        BackendError("weights"): ``name`` is not a tokenizer entry, or a required file (``tokenizer.json``) is
            missing; the hint gives the command that downloads it and the one that imports a local folder.
    """
    entry = _entry(name)
    if not isinstance(entry, FolderEntry) or entry.kind != "tokenizer":
        tokenizers = ", ".join(n for n, e in REGISTRY.items() if e.kind == "tokenizer")
        raise BackendError("weights", f"{name!r} is not a tokenizer", f"tokenizer names: {tokenizers}")
    return _usable(name, directory or weights_dir())


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError("weights", f"cannot create the weights folder {folder}: {exc.strerror or exc}",
                           f"set {WEIGHTS_DIR_ENV} to a writable folder") from exc


def _install(part: Path, target: Path, *, replace: bool) -> None:
    """Move a complete ``.part`` into place; without ``replace``, only if ``target`` does not exist (atomic)."""
    if replace:
        os.replace(part, target)
        return
    try:
        os.link(part, target)  # fails if target exists, so a concurrent writer is never overwritten
    except FileExistsError:
        part.unlink()
        raise BackendError("weights", f"{target} appeared while it was being written",
                           "another process installed it; run `python -m backend weights verify`") from None
    except OSError:  # no hard links on this filesystem
        if target.exists():
            part.unlink()
            raise BackendError("weights", f"{target} already exists", "pass --force to replace it") from None
        os.replace(part, target)
        return
    part.unlink()


def _relpath(folder: Path, target: Path) -> str:
    return PurePosixPath(*target.relative_to(folder).parts).as_posix()


def _import_one(source: Path, target: Path, folder: Path, *, name: str | None, expected: str | None,
                force: bool) -> str:
    """Copy one file into the weights folder and record it; returns its status.

    The copy goes to a scratch name of this process's own (two imports never share one), then, under the
    weights folder's lock, it is installed and recorded: the record's hash is always that of the file now at
    ``target`` (ours, or an identical one another import installed first).
    """
    rel = _relpath(folder, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = create_scratch(target.parent, f"{owned_prefix(IMPORT_PREFIX)}{os.getpid()}-", ".part")
        os.close(fd)
        part = Path(scratch)
    except OSError as exc:
        raise BackendError("weights", f"cannot copy {source} to {target}: {exc.strerror or exc}",
                           "check that the weights folder is writable and has room for the file") from exc
    try:
        digest = copy_hashing(source, part)
        with folder_locks([folder]):
            sweep(target.parent, owned_prefix(IMPORT_PREFIX))  # copies of imports that were killed
            if target.exists() and not force:  # already there, or another import installed it meanwhile
                digest = _same_or_refuse(source, digest, target)
            else:
                _install(part, target, replace=force)
            status = record.remember(folder, rel, sha256=digest, expected=expected, name=name,
                                     source=f"import: {source}")
    except OSError as exc:
        raise BackendError("weights", f"cannot copy {source} to {target}: {exc.strerror or exc}",
                           "check that the weights folder is writable and has room for the file") from exc
    finally:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
    if status == "mismatch":  # the CLI says so loudly; the record keeps it from being used as the published file
        log.info("%s is not the published %s (SHA-256 %s, published %s); stored as %s, recorded as a mismatch",
                 source, name, digest, expected, target)
    return status


def _same_or_refuse(source: Path, digest: str, target: Path) -> str:
    """The hash of the existing ``target`` when it equals the copy's ``digest``; else a "weights" error."""
    if sha256_file(target) != digest:
        raise BackendError("weights", f"{target} already exists and differs from {source}",
                           "pass --force to replace it (the old file is lost), or import without --name to "
                           "keep the new file under its own name")
    return digest


def import_file(source: Path, name: str | None = None, directory: Path | None = None, *,
                force: bool = False) -> Path:
    """Copy a local weights file (or a tokenizer folder) into the weights folder, recording its hash.

    A file imported under a known name whose hash differs from the published one is kept, recorded as a
    mismatch and warned about; it is never listed or resolved as the published weights.

    Args:
        source: the file to import, or a folder holding a tokenizer entry's files (``name`` required then).
        name: the registry name it is; None = recognise it by its SHA-256, or keep its own file name.
        directory: the weights folder; default ``weights_dir()`` (created if needed).
        force: replace an existing, different file.

    Returns:
        The path of the imported file (or folder) in the weights folder.
    """
    source = Path(source).expanduser()
    folder = directory or weights_dir()
    entry = _entry(name) if name is not None else None
    if source.is_dir():
        if not isinstance(entry, FolderEntry):
            tokenizers = ", ".join(n for n, e in REGISTRY.items() if isinstance(e, FolderEntry))
            raise BackendError("weights", f"{source} is a folder; only tokenizer folders can be imported",
                               f"name it with --name ({tokenizers}), or import a weights file")
        return _import_folder(source, entry, folder, force=force)
    if not source.is_file():
        raise BackendError("weights", f"cannot import {source}: no such file", "check the path")
    _make_folder(folder)
    if isinstance(entry, FolderEntry):
        wanted = next((f for f in entry.files if PurePosixPath(f.relpath).name == source.name), None)
        if wanted is None:
            raise BackendError("weights", f"{source.name} is not one of the {name} files",
                               f"expected {', '.join(PurePosixPath(f.relpath).name for f in entry.files)}, or "
                               f"import the folder holding them")
        _import_one(source, folder / wanted.relpath, folder, name=name, expected=wanted.sha256, force=force)
        return folder / entry.folder
    if entry is None:
        digest = sha256_file(source)
        entry = next((e for e in REGISTRY.values() if isinstance(e, WeightsEntry) and e.sha256 == digest), None)
    target = folder / (entry.filename if entry else source.name)
    _import_one(source, target, folder, name=entry.name if entry else None,
                expected=entry.sha256 if entry else None, force=force)
    log.info("imported %s → %s", source, target)
    return target


def _import_folder(source: Path, entry: FolderEntry, folder: Path, *, force: bool) -> Path:
    found = [(f, source / PurePosixPath(f.relpath).name) for f in entry.files]
    missing = [str(path) for f, path in found if f.required and not path.is_file()]
    if missing:
        raise BackendError("weights", f"cannot import {source} as {entry.name}: {', '.join(missing)} is missing",
                           f"give the folder that holds {', '.join(PurePosixPath(m).name for m in missing)}")
    for wanted, path in found:
        if path.is_file():
            _import_one(path, folder / wanted.relpath, folder, name=entry.name, expected=wanted.sha256, force=force)
    return folder / entry.folder


def _reject(part: Path, what: str, expected: str, actual: str) -> BackendError:
    part.unlink()
    return BackendError("weights", f"checksum mismatch for {what}: expected SHA-256 {expected}, got {actual}",
                        "the download is corrupt or not the expected file; it was removed — download it again")


def _download_one(entry: Entry, wanted: WeightsFile, folder: Path, *, expected: str | None, force: bool,
                  progress: bool, timeout: float) -> str:
    """Make ``wanted`` present and recorded; returns its status. An existing file is re-hashed, not replaced."""
    target = folder / wanted.relpath
    rel = wanted.relpath
    if target.is_file() and not force:
        digest = sha256_file(target)
        status = record.remember(folder, rel, sha256=digest, expected=expected, name=entry.name, source="verify")
        if status == "mismatch":
            raise BackendError("weights", f"{target} is already present but is not the published {entry.name}: "
                                          f"SHA-256 {digest}, published {expected}; it was kept",
                               f"pass --force to replace it with a fresh download of {entry.name}")
        log.info("%s is already present (%s): %s", entry.name, status, target)
        return status
    _make_folder(target.parent)
    part = target.with_name(target.name + ".part")
    try:
        fetch(wanted.url, part, wanted.size, progress, timeout)
    except BackendError as exc:
        if not wanted.required and getattr(exc.__cause__, "code", None) == 404:
            log.info("%s has no %s; skipped", entry.name, rel)
            return "missing"
        raise
    digest = sha256_file(part)
    if expected is not None and digest != expected.lower():
        raise _reject(part, entry.name, expected, digest)
    _install(part, target, replace=force)
    if expected is None:
        log.warning("%s was not verified (no known hash); its SHA-256 is %s", rel, digest)
    log.info("downloaded %s → %s", entry.name, target)
    return record.remember(folder, rel, sha256=digest, expected=expected, name=entry.name, source="download")


def download(entry: Entry | str, directory: Path | None = None, *, sha256: str | None = None,
             trust_unverified: bool = False, force: bool = False, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Download a known weight (or tokenizer folder) into the weights folder, resuming a partial download.

    Args:
        entry: a registry entry or its name.
        directory: the weights folder; default ``weights_dir()`` (created if needed).
        sha256: the expected hash of a single-file entry, overriding (or supplying) the registry's.
        trust_unverified: allow a weights download with no expected hash at all (the computed hash is logged
            and recorded). Tokenizer files are JSON data and need no such permission.
        force: replace a file that is already present (re-downloaded, verified, then swapped in).
        progress: show a tqdm bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        The path of the file (or folder). A file already present is re-hashed and recorded instead of being
        fetched; one that differs from the published hash raises (kept as it is) unless ``force``. An interrupted
        download leaves ``<file>.part`` behind; calling again resumes it with an HTTP Range request. A checksum
        mismatch deletes the partial file.
    """
    if isinstance(entry, str):
        entry = _entry(entry)
    if sha256 is not None and isinstance(entry, FolderEntry):
        raise BackendError("weights", f"--sha256 applies to single-file weights, not to the folder {entry.name}",
                           "omit --sha256")
    folder = directory or weights_dir()
    for wanted in entry.files:
        expected = sha256 or wanted.sha256
        present = (folder / wanted.relpath).is_file() and not force  # re-hashed below, nothing is fetched
        if expected is None and not trust_unverified and isinstance(entry, WeightsEntry) and not present:
            raise BackendError("weights", f"no published SHA-256 for {entry.name}, so the download cannot be "
                                          "verified", "pass --sha256 HEX if you know the hash, or "
                                                      "--trust-unverified to accept the file as is")
        _make_folder(folder)
        _download_one(entry, wanted, folder, expected=expected, force=force, progress=progress, timeout=timeout)
    return folder / entry.location


def verify(name: str | None = None, directory: Path | None = None) -> dict[str, Presence]:
    """Re-hash the present files of ``name`` (None: every known entry) and record the result.

    Returns:
        Registry name → its state after hashing (only the entries checked).
    """
    folder = directory or weights_dir()
    entries = [_entry(name)] if name is not None else list(REGISTRY.values())
    for entry in entries:
        for wanted in entry.files:
            if (folder / wanted.relpath).is_file():
                digest = sha256_file(folder / wanted.relpath)
                record.remember(folder, wanted.relpath, sha256=digest, expected=wanted.sha256, name=entry.name,
                                source="verify")
    files = record.read(folder)
    return {e.name: _presence(e, folder, files) for e in entries}
