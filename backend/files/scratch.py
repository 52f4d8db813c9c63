"""Scratch files for atomic writes that end up with the permissions of any other file the user creates.

``tempfile.mkstemp`` creates its file private (0600) on purpose; a file written under such a name and then
renamed into place (a checkpoint, its sidecar) would stay unreadable to the user's group and to other accounts
that share a model folder. Here the scratch file is created with mode 0666 and the process umask applies, as for
``open(path, "w")``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_ATTEMPTS = 100


def create_scratch(folder: str | Path, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """Create a new empty file ``folder/{prefix}{random}{suffix}`` exclusively, honouring the umask.

    Returns:
        (an open write-only file descriptor, the file's path), as ``tempfile.mkstemp`` returns them.

    Raises:
        FileExistsError: no free name after many attempts (never in practice).
        OSError: the folder does not exist or is not writable.
    """
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    for _ in range(_ATTEMPTS):
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free scratch name for {prefix}*{suffix} in {folder}")
