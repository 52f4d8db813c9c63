"""An exclusive lock on a folder's contents, through a lock file that the kernel releases when its owner dies.

Writers that change several files of one folder together (the output pair, a weights file and the folder's
record) hold the folder's lock around the change, so two processes never interleave their steps, and a writer
that finds a dead writer's half-done change (``backend.output.swap``) can roll it back knowing that no live
writer is in the middle of it. The lock is ``fcntl.flock`` on ``folder/.rsrefseg.lock`` (``msvcrt.locking`` on
Windows): the kernel releases it when the process ends for any reason, SIGKILL included, so a lock is never
stale. On POSIX the holder removes the lock file before releasing it, and a writer that locked a file which was
removed meanwhile tries again, so the folder is left as it was; a file left by a killed holder is an unlocked
empty file that the next writer takes and removes. Windows cannot remove an open file: there it stays.

Where the file system has no locks (``ENOLCK``, ``ENOTSUP``: some network shares), the change goes ahead
unlocked with a warning in the log: refusing to write there at all would be worse than the race it guards.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".rsrefseg.lock"
# How long a writer waits while another one finishes its change (a swap takes milliseconds, an import seconds).
WAIT_SECONDS = 300.0
_POLL_SECONDS = 0.005
_NO_LOCKS = {errno.ENOLCK, getattr(errno, "ENOTSUP", -1), getattr(errno, "EOPNOTSUPP", -1), errno.ENOSYS}


class LockTimeoutError(TimeoutError):
    """Another process held the lock for longer than the wait allowed."""


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False when another open file holds it."""
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EDEADLK):
                return False
            raise
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_named(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (its holder may have removed it before we locked it)."""
    if sys.platform == "win32":
        return True
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _acquire(path: str, deadline: float) -> int:
    """Open and lock ``path`` (created if needed); the descriptor that holds the lock."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        try:
            while not _try_lock(fd):
                if time.monotonic() > deadline:
                    raise LockTimeoutError(f"{os.path.dirname(path)} stayed locked by another writer")
                time.sleep(_POLL_SECONDS)
        except OSError as err:
            if err.errno not in _NO_LOCKS:
                os.close(fd)
                raise
            log.warning("%s does not support file locks (%s); writing without one", path, err.strerror)
            return fd
        if _still_named(fd, path):
            return fd
        os.close(fd)  # locked a removed file: its holder finished; lock the current one


@contextlib.contextmanager
def folder_locks(folders: Iterable[str | Path], wait_seconds: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold the exclusive lock of each folder for the body of the ``with``.

    The locks are taken in one fixed order (sorted real paths), so two writers of overlapping folders never
    deadlock.

    Args:
        folders: existing folders.
        wait_seconds: how long to wait in all while other processes hold them.

    Raises:
        LockTimeoutError: a lock was still held by another process after ``wait_seconds``.
        OSError: a lock file cannot be created (a read-only folder, say).
    """
    deadline = time.monotonic() + wait_seconds
    held: list[tuple[str, int]] = []
    try:
        for folder in sorted({os.path.realpath(f) for f in folders}):
            path = os.path.join(folder, LOCK_NAME)
            held.append((path, _acquire(path, deadline)))
        yield
    finally:
        for path, fd in reversed(held):
            if sys.platform != "win32":
                with contextlib.suppress(OSError):
                    os.remove(path)  # while still locked: a waiting writer sees it gone and retries
            os.close(fd)  # closing the only descriptor of the open file releases the lock
