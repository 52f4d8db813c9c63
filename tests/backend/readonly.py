"""Folders and files that cannot be changed, for write-failure tests, as root too (where chmod does not bind)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _chattr(flag: str, path: Path) -> bool:
    chattr = shutil.which("chattr")
    return bool(chattr) and subprocess.run([chattr, flag, str(path)], capture_output=True).returncode == 0


@contextmanager
def immutable(path: Path) -> Iterator[Path]:
    """``chattr +i``: not even root may replace, rename or (for a folder) add to it; skips where unavailable."""
    if not _chattr("+i", path):
        pytest.skip("chattr +i is not available here (needs root on ext4/xfs/btrfs)")
    try:
        yield path
    finally:
        _chattr("-i", path)


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """A folder no file can be created in: chmod 555 for a normal user, immutable for root."""
    if os.geteuid() == 0:
        with immutable(folder):
            yield folder
        return
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)
