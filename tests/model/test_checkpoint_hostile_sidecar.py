"""Hostile sidecar values (second hostile sweep): sizes and resolutions out of any sensible range are refused where
the sidecar is read, with a "checkpoint" error naming the key, the value and the allowed range; nothing is built.

Real files: tiny checkpoints written by ``save_checkpoint`` (SAM 1 and SAM 2.1), their sidecars edited on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from backend.errors import BackendError
from backend.loading import load_predictor
from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.checkpoint.io import read_checkpoint_meta


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A whole-model tiny checkpoint per SAM family."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for name in ("tiny", "tiny-sam2"):
        paths[name] = folder / f"{name}.safetensors"
        save_checkpoint(build_model(load_config(name)), paths[name], include_base=True)
    return paths


def _copy(source: Path, folder: Path) -> Path:
    path = folder / source.name
    shutil.copyfile(source, path)
    shutil.copyfile(source.with_suffix(".json"), path.with_suffix(".json"))
    return path


def _edited(path: Path, key: str, value: Any) -> Path:
    """Set the dotted ``key`` of the sidecar to ``value`` (written as Python's json writes it: NaN included)."""
    sidecar = path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    sidecar.write_text(json.dumps(data))
    return sidecar


def _refused(path: Path, *fragments: str) -> BackendError:
    with pytest.raises(BackendError) as info:
        load_model(path)
    with pytest.raises(BackendError) as via_worker:  # the worker's load request
        load_predictor(checkpoint=str(path), device="cpu")
    for exc in (info.value, via_worker.value):
        assert exc.code == "checkpoint" and "is malformed" in exc.message and exc.hint, exc.message
        for fragment in fragments:
            assert fragment in exc.message, exc.message
    return info.value


ALLOWED_GSD = "0.001 <= lo <= hi <= 10000"


@pytest.mark.parametrize(("gsd", "shown"), [
    ([1e-300, 1e-300], "[1e-300, 1e-300]"), ([-1.0, 2.0], "[-1.0, 2.0]"), ([float("nan"), 2.0], "[NaN, 2.0]"),
    ([0.3, float("inf")], "[0.3, Infinity]"), ([2.0, 0.5], "[2.0, 0.5]"), ([0.5, 1e9], "[0.5, 1000000000.0]"),
])
def test_gsd_range_out_of_bounds_is_refused_naming_key_value_and_range(saved, tmp_path, gsd, shown) -> None:
    path = _copy(saved["tiny"], tmp_path)
    sidecar = _edited(path, "meta.gsd_range_m", gsd)
    error = _refused(path, str(sidecar), "meta.gsd_range_m", ALLOWED_GSD, f"got {shown}")
    assert "metres per pixel" in error.message
    with pytest.raises(BackendError, match="meta.gsd_range_m"):  # `info` and the dock read the meta alone
        read_checkpoint_meta(path)


@pytest.mark.parametrize(("family", "size", "message"), [
    ("tiny", 100000, "config.input_size must be a multiple of 16 from 16 to 4096 (SAM's patch 16), got 100000"),
    ("tiny", 0, "config.input_size must be a multiple of 16 from 16 to 4096 (SAM's patch 16), got 0"),
    ("tiny", -256, "config.input_size must be a multiple of 16 from 16 to 4096 (SAM's patch 16), got -256"),
    ("tiny", 250, "config.input_size must be a multiple of 16 from 16 to 4096 (SAM's patch 16), got 250"),
    ("tiny", 4112, "config.input_size must be a multiple of 16 from 16 to 4096 (SAM's patch 16), got 4112"),
    ("tiny-sam2", 240, "config.input_size must be a multiple of 32 from 32 to 4096 (SAM's stride 32), got 240"),
    ("tiny", True, "config.input_size must be an integer, got true"),
    ("tiny", "256", 'config.input_size must be an integer, got "256"'),
    ("tiny", 256.0, "config.input_size must be an integer, got 256.0"),
])
def test_input_size_out_of_bounds_is_refused_naming_key_value_and_range(saved, tmp_path, family, size,
                                                                       message) -> None:
    path = _copy(saved[family], tmp_path)
    sidecar = _edited(path, "config.input_size", size)
    _refused(path, str(sidecar), message)


def test_bounds_leave_sound_values_alone(saved, tmp_path) -> None:
    path = _copy(saved["tiny"], tmp_path)
    _edited(path, "meta.gsd_range_m", [0.001, 10000])
    assert load_model(path).meta.gsd_range_m == (0.001, 10000.0)


@pytest.mark.parametrize(("key", "value", "sidecar_shows", "file_shows"), [
    ("config.clip.name", "ViT-B-32", '"ViT-B-32"', '"tiny-clip"'),
    ("config.clip.tokenizer", "ViT-B-32", '"ViT-B-32"', '"ViT-B-16"'),  # same shapes: it used to load silently
    ("config.prompter.num_heads", 2, "2", "4"),
])
def test_an_edited_sidecar_config_disagreeing_with_the_file_is_refused(saved, tmp_path, key, value, sidecar_shows,
                                                                       file_shows) -> None:
    path = _copy(saved["tiny"], tmp_path)
    sidecar = _edited(path, key, value)
    for load in (load_model, lambda p: load_predictor(checkpoint=str(p), device="cpu")):
        with pytest.raises(BackendError) as info:
            load(path)
        assert info.value.code == "checkpoint" and "restore the .json" in info.value.hint
        assert f"{sidecar} does not describe the model stored in {path.name}" in info.value.message
        assert f"{key} is {sidecar_shows} in {sidecar.name} but {file_shows} in {path.name}" in info.value.message


def test_an_imported_authors_checkpoint_carries_its_config_too(tmp_path) -> None:
    import torch
    from authors_layout import authors_state, tiny_config

    from backend.model.authors import import_authors

    config = tiny_config()
    torch.save({"state_dict": authors_state(config)}, tmp_path / "authors.pth")
    path = import_authors(tmp_path / "authors.pth", tmp_path / "imported.safetensors", config=config)
    load_model(path)
    sidecar = _edited(path, "config.clip.name", "ViT-SO400M-16-SigLIP2-512")
    with pytest.raises(BackendError, match=f"config.clip.name is \"ViT-SO400M-16-SigLIP2-512\" in {sidecar.name}"):
        load_model(path)
