"""Files written atomically get the permissions the user's umask gives any new file, not mkstemp's private 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backend.files.scratch import create_scratch
from backend.model import build_model, load_config
from backend.model.checkpoint.io import save_checkpoint


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: str | Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_scratch_files_follow_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    with _umask(mask):
        fd, path = create_scratch(tmp_path, ".out.")
    os.close(fd)
    assert Path(path).parent == tmp_path and Path(path).name.startswith(".out.") and path.endswith(".tmp")
    assert _mode(path) == mode and os.path.getsize(path) == 0
    fd, other = create_scratch(tmp_path, ".out.")
    os.close(fd)
    assert other != path  # a new name each time, never an existing file


def test_a_saved_checkpoint_and_its_sidecar_are_readable_by_others(tmp_path: Path) -> None:
    with _umask(0o022):
        sidecar = save_checkpoint(build_model(load_config("tiny")), tmp_path / "shared.safetensors",
                                  include_base=True)
    # safetensors itself writes its files 0600
    assert _mode(sidecar.with_suffix(".safetensors")) == 0o644 and _mode(sidecar) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json", "shared.safetensors"]  # no scratch left


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        create_scratch(tmp_path / "absent", ".x.")
