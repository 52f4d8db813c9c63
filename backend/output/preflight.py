"""Cheap checks that run before any model work: text encoding, output targets, free disk space.

A user should learn that the output folder is read-only, the disk is full or a phrase has a broken byte within
a fraction of a second, not after the model has loaded and the whole run has finished. This module imports
only the standard library, so the command line can run it before importing numpy, GDAL or torch.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from backend.errors import BackendError

# An output folder with less free space than this is refused before the run (the outputs themselves are small).
MIN_FREE_BYTES = 16 * 2**20


def check_utf8(text: str, what: str) -> None:
    """Refuse text that cannot be written as UTF-8 (lone surrogates: bytes a shell or a file did not decode).

    Args:
        text: the text, as Python got it (argv undecodable bytes arrive as surrogate escapes).
        what: how to name it to the user, e.g. "phrase 2" or "argument 3".

    Raises:
        BackendError: ``bad_request`` naming the first bad byte and its byte position (0-based).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = ord(text[err.start])
        position = len(text[:err.start].encode("utf-8"))
        bad = f"byte 0x{char - 0xDC00:02x}" if 0xDC80 <= char <= 0xDCFF else f"character U+{char:04X}"
        shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
        raise BackendError("bad_request", f"{what} is not valid UTF-8 text: {bad} at byte position {position} "
                           f"of '{shown}'",
                           "type it again in a UTF-8 terminal (e.g. LANG=C.UTF-8), or convert the text to UTF-8 "
                           "(iconv -f latin1 -t utf-8)") from None


def decode_utf8(data: bytes, what: str) -> str:
    """Decode ``data`` as UTF-8 (a leading byte-order mark is dropped), refusing a bad byte with its position.

    Raises:
        BackendError: ``bad_request`` naming the byte, its position and its line.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise BackendError("bad_request", f"{what} is not valid UTF-8: byte 0x{data[err.start]:02x} at byte "
                           f"position {err.start} (line {line})",
                           "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)") from None


def os_error(err: OSError, path: str | Path, action: str = "write") -> BackendError:
    """One clear error for a failed write, by cause: permission, read-only disk, full disk, invalid path.

    Args:
        err: what the operating system said.
        path: the file or folder concerned.
        action: the verb for the message ("write", "replace", …).
    """
    where = str(path)
    if err.errno in (errno.EACCES, errno.EPERM):
        return BackendError("bad_request", f"cannot {action} {where!r}: permission denied",
                            "choose an output folder you can write to, or change the file's permissions")
    if err.errno == errno.EROFS:
        return BackendError("bad_request", f"cannot {action} {where!r}: the disk is read-only",
                            "choose an output folder on a writable disk")
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return BackendError("bad_request", f"cannot {action} {where!r}: the disk is full",
                            "free some space or choose an output folder on another disk")
    if err.errno in (errno.ENAMETOOLONG, errno.EINVAL, errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return BackendError("bad_request", f"cannot {action} {where!r}: {err.strerror or 'invalid path'}",
                            "choose a shorter, valid output path in an existing folder")
    return BackendError("bad_request", f"cannot {action} {where!r}: {err.strerror or err}",
                        "choose another output folder")


def check_output_targets(paths: Iterable[str], overwrite: bool, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Check that every output can be written, without writing any of them.

    Each path must be valid UTF-8, in an existing folder where a file can really be created (permissions,
    read-only disks and ACLs are all tried, not guessed), with at least ``min_free_bytes`` free; an existing
    path must be a regular file, and is accepted only with ``overwrite``.

    Raises:
        BackendError: ``output_exists`` for an existing file without ``overwrite``, else ``bad_request``.
    """
    folders = set()
    for path in map(str, paths):
        check_utf8(path, "the output path")
        folder = Path(path).parent
        if not folder.is_dir():
            raise BackendError("bad_request", f"output folder {str(folder)!r} does not exist",
                               "create it or choose another output path")
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as err:
            raise os_error(err, path, "check") from err
        if mode is not None and not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a device or special file"
            raise BackendError("bad_request", f"{path!r} is {kind}, not a file the outputs can replace",
                               "choose an output path that names a file (e.g. result.gpkg)")
        if mode is not None and not overwrite:
            raise BackendError("output_exists", f"{path!r} already exists",
                               "choose another output name, delete the file, or pass --overwrite")
        folders.add(folder)
    for folder in folders:
        _check_folder(folder, min_free_bytes)


def _check_folder(folder: Path, min_free_bytes: int) -> None:
    """Create and delete a probe file in ``folder``; check its free space."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".rsrefseg-probe-", dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as err:
        raise os_error(err, folder, "write to") from err
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise BackendError("bad_request", f"the disk of {str(folder)!r} is full ({free / 2**20:.1f} MiB free)",
                           "free some space or choose an output folder on another disk")
