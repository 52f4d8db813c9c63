"""Files a killed process leaves behind: name them after their owner's PID and sweep those of dead owners.

A run killed by SIGKILL, the out-of-memory killer or the plugin's cancel timeout gets no chance to clean up, so
every scratch file or folder the backend creates carries its owner's machine and process id in its name
(``<base><host>-<pid>…``, see ``owned_prefix``); the next run on the same machine removes the ones whose owner no
longer exists. Entries of other machines sharing the folder (a network share) are never touched: their PIDs
mean nothing here.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path


def owned_prefix(base: str) -> str:
    """``base`` followed by this machine's name (letters and digits only, at most 24) and a dash."""
    return f"{base}{re.sub(r'[^A-Za-z0-9]', '', socket.gethostname())[:24] or 'host'}-"


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence check only, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _windows_pid_alive(pid: int) -> bool:
    """``OpenProcess`` + ``GetExitCodeProcess`` (``os.kill`` would terminate the process on Windows)."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists but belongs to someone else
    try:
        code = wintypes.DWORD()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def owner_pid(name: str, prefix: str) -> int | None:
    """The PID in ``<prefix><pid>`` or ``<prefix><pid>-…`` (None when ``name`` is not one of ours)."""
    match = re.match(re.escape(prefix) + r"(\d+)(?:-|$)", name)
    return int(match.group(1)) if match else None


def sweep(folder: str | Path, prefix: str) -> list[Path]:
    """Delete the entries of ``folder`` named ``<prefix><pid>…`` whose owner process is gone.

    ``prefix`` should come from ``owned_prefix``, so that only this machine's entries are considered.

    Entries of live processes, and entries that cannot be removed (another user's), are left alone.

    Returns:
        The paths that were removed.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = owner_pid(entry.name, prefix)
        if pid is None or pid_alive(pid):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
