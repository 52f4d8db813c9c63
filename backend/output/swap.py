"""Put complete scratch files in place as one change, all or none, even if the writer is killed half-way.

The caller holds the lock of every folder concerned (``backend.files.lock``). A change is written down before
any file moves: a journal ``.rsrefseg-swap-<host>-<pid>-….json`` in each folder lists that folder's steps
(final path, the complete new file, where the old content is kept, the new file's identity); the first
folder's journal is the change's commit record. Then:

1. the old content of each final path is kept under a backup name (a hard link, or a copy where links are
   impossible);
2. each new file takes its final name: ``os.replace`` over an old file; a hard link for a new name (refused
   atomically if the name exists), or, on file systems without hard links, a rename after checking under the
   lock that the name is free (never an empty placeholder);
3. the first folder's journal is removed: the commit point;
4. the backups, the other journals and the scratch files are removed.

A writer that fails raises after putting everything back itself. A writer killed before step 3 leaves its
journals; the next writer to any of those folders (``roll_back_dead``, under the lock) restores every backup
and removes every new file it placed, recognised by identity (device and inode) so that a file someone else
saved under that name is never removed. One killed after step 3 only leaves garbage, which is removed.

Test hook: when ``RSREFSEG2_TEST_KILL_AT`` names a step ("journal", "backup 0", "place 1", "commit", …), the
process SIGKILLs itself right after that step (``tests/backend/test_swap_kills.py``); nothing else reads it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.errors import BackendError
from backend.files.stale import owned_prefix, owner_pid, pid_alive
from backend.output.preflight import os_error

log = logging.getLogger(__name__)

JOURNAL_PREFIX = ".rsrefseg-swap-"
KILL_AT_ENV = "RSREFSEG2_TEST_KILL_AT"
# errno values of file systems that cannot hard-link (FAT, some network shares).
NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, getattr(errno, "ENOTSUP", -1),
                 getattr(errno, "EOPNOTSUPP", -1)}


@dataclass(frozen=True)
class Step:
    """One file of a change.

    Attributes:
        final: the path that gets the new content.
        temp: the complete new file (a scratch name in the same folder).
        backup: where ``final``'s old content is kept during the change; None when ``final`` did not exist.
        identity: ``(st_dev, st_ino)`` of ``temp``, which ``final`` has once the new file is placed.
    """

    final: str
    temp: str
    backup: str | None
    identity: tuple[int, int]


def _kill_point(step: str) -> None:
    """The test hook (module docstring): SIGKILL this process right after ``step`` when asked to."""
    if os.environ.get(KILL_AT_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def swap_in(temps: dict[str, str], backup_name: Callable[[str], str], *, overwrite: bool) -> None:
    """Give each scratch file its final name as one change (module docstring); the caller holds the locks.

    Args:
        temps: complete scratch file → final path.
        backup_name: ``backup_name(final)`` → a fresh scratch name beside ``final`` for its old content.
        overwrite: replace existing finals; without it an existing final refuses the whole change.

    Raises:
        BackendError: ``output_exists`` naming a final path that exists without ``overwrite``; ``bad_request``
            naming a file that could not be placed. Either way every final path is as it was before.
    """
    steps = []
    for temp, final in temps.items():
        exists = os.path.isfile(final)
        if exists and not overwrite:
            raise _exists(final)
        info = os.stat(temp)
        steps.append(Step(final, temp, backup_name(final) if exists else None, (info.st_dev, info.st_ino)))
    journals = _write_journals(steps)
    try:
        _kill_point("journal")
        for index, step in enumerate(steps):
            if step.backup:
                _keep_copy(step.final, step.backup)
                _kill_point(f"backup {index}")
        for index, step in enumerate(steps):
            _place(step)
            _kill_point(f"place {index}")
    except BaseException:
        _roll_back(steps)
        for journal in journals:
            _remove_quietly(journal)
        raise
    _remove_quietly(journals[0])  # committed
    _kill_point("commit")
    _finish(steps, journals[1:])


def roll_back_dead(folder: str | Path) -> list[str]:
    """Undo the half-done changes of this machine's writers that died in ``folder``; the caller holds its lock.

    Returns:
        The final paths that were put back (old content restored, or a lone new file removed).
    """
    prefix = owned_prefix(JOURNAL_PREFIX)
    restored: list[str] = []
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return restored
    for name in names:
        pid = owner_pid(name, prefix)
        if pid is None or pid_alive(pid):
            continue
        journal = os.path.join(folder, name)
        try:
            record = json.loads(Path(journal).read_text(encoding="utf-8"))
            steps = [Step(s["final"], s["temp"], s["backup"], tuple(s["identity"])) for s in record["steps"]]
            committed = not record["is_primary"] and not os.path.exists(record["primary"])
        except (OSError, ValueError, KeyError, TypeError):
            _remove_quietly(journal)  # cut short while being written: no file had moved yet
            continue
        if not committed:
            log.warning("rolling back the outputs of a writer that was killed: %s", [s.final for s in steps])
            restored += _roll_back(steps)
            _remove_quietly(journal)
        else:
            _finish(steps, [journal])  # the change was committed; only its leftovers remain
    return restored


def _write_journals(steps: list[Step]) -> list[str]:
    """Write each folder's journal; their paths, the primary (commit record) first."""
    by_folder: dict[str, list[Step]] = {}
    for step in steps:
        by_folder.setdefault(os.path.dirname(os.path.abspath(step.final)), []).append(step)
    name = f"{owned_prefix(JOURNAL_PREFIX)}{os.getpid()}-{secrets.token_hex(4)}.json"
    journals = [os.path.join(folder, name) for folder in by_folder]
    written: list[str] = []
    try:
        for journal, folder_steps in zip(journals, by_folder.values(), strict=True):
            written.append(journal)
            with open(journal, "x", encoding="utf-8") as file:
                file.write(json.dumps({"is_primary": journal == journals[0], "primary": journals[0],
                                       "steps": [asdict(s) for s in folder_steps]}))
    except OSError as err:
        for journal in written:
            _remove_quietly(journal)
        raise os_error(err, os.path.dirname(written[-1])) from err
    return journals


def _keep_copy(final: str, backup: str) -> None:
    """Keep ``final``'s current content as ``backup``: a hard link, or a complete copy renamed into place."""
    try:
        try:
            os.link(final, backup)
        except OSError as err:
            if err.errno not in NO_HARD_LINKS:
                raise
            partial = f"{backup}.part"  # a kill mid-copy must not leave a half backup to restore from
            shutil.copy2(final, partial)
            os.replace(partial, backup)
    except OSError as err:
        raise _left_unchanged(os_error(err, final, "replace")) from err


def _place(step: Step) -> None:
    """Give ``step.temp`` the name ``step.final``: replacing the old file, or only if the name is free."""
    try:
        if step.backup:
            os.replace(step.temp, step.final)
            return
        try:
            os.link(step.temp, step.final)  # refused if the name exists, in one atomic step
        except OSError as err:
            if err.errno not in NO_HARD_LINKS:
                raise
            if os.path.lexists(step.final):  # under the lock, no other of our writers can take it meanwhile
                raise FileExistsError(errno.EEXIST, "File exists", step.final) from err
            os.rename(step.temp, step.final)
    except FileExistsError as err:
        raise _exists(step.final) from err
    except OSError as err:
        raise _left_unchanged(os_error(err, step.final, "replace" if step.backup else "write")) from err


def _roll_back(steps: list[Step]) -> list[str]:
    """Put every final path back as it was before the change; remove the change's scratch files.

    A final path is touched only while it holds this change's new file (or is missing): a final that still
    holds its old content, or that someone replaced since, is left as it is.
    """
    restored = []
    for step in reversed(steps):
        ours = _has_identity(step.final, step.identity)
        try:
            if step.backup and os.path.exists(step.backup) and (ours or not os.path.lexists(step.final)):
                os.replace(step.backup, step.final)
                restored.append(step.final)
            elif ours and not step.backup:
                os.remove(step.final)
                restored.append(step.final)
        except OSError as err:  # keep the backup: the user's old data must never be deleted
            log.error("could not restore %s (%s); its previous content is kept as %s", step.final, err,
                      step.backup)
            continue
        for leftover in (step.temp, step.backup):  # never the old content's only name (see above)
            if leftover:
                _remove_quietly(leftover)
    return restored


def _finish(steps: list[Step], journals: list[str]) -> None:
    """Remove a committed change's backups and scratch files, then its remaining journals."""
    for step in steps:
        for leftover in (step.temp, step.backup):
            if leftover:
                _remove_quietly(leftover)
    for journal in journals:
        _remove_quietly(journal)


def _has_identity(path: str, identity: tuple[int, int]) -> bool:
    """Whether ``path`` is the file with ``identity`` (device, inode)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == tuple(identity)


def _exists(final: str) -> BackendError:
    return BackendError("output_exists", f"{final!r} already exists (another run may have just written it)",
                        "choose another output name, delete the file, or pass --overwrite")


def _left_unchanged(error: BackendError) -> BackendError:
    return BackendError(error.code, f"{error.message}; the existing outputs were left unchanged", error.hint)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
