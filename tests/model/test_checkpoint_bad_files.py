"""Damaged, edited and hostile checkpoint files: each is refused with a coded error that names the file and says
what is wrong, never a library exception, never torch's "weights_only=False" advice, and nothing in a pickle runs.

Real files throughout: a tiny checkpoint written by ``save_checkpoint``, cut, padded or edited on disk; pickles made
with ``pickle``/``torch.save`` whose payload would create a marker file if it were ever executed.
"""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from backend.errors import BackendError
from backend.loading import load_predictor
from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.checkpoint.io import read_checkpoint_meta
from backend.worker import error_reply


def _assert_clear(exc: BackendError, code: str, file: Path, *fragments: str) -> None:
    text = f"{exc.message} {exc.hint}"
    assert exc.code == code and str(file) in exc.message and exc.hint, text
    for fragment in fragments:
        assert fragment in exc.message, text
    assert "weights_only" not in text and "Traceback" not in text
    assert error_reply("r1", exc).code == code  # the worker answers with this code, not "internal"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(build_model(load_config("tiny")), path, include_base=True)
    return path


@pytest.fixture
def ckpt(saved: Path, tmp_path: Path) -> Path:
    path = tmp_path / saved.name
    shutil.copyfile(saved, path)
    shutil.copyfile(saved.with_suffix(".json"), path.with_suffix(".json"))
    return path


def _refused(path: Path, code: str = "checkpoint") -> BackendError:
    with pytest.raises(BackendError) as info:
        load_model(path)
    with pytest.raises(BackendError) as via_worker_path:  # the worker's load request goes through load_predictor
        load_predictor(checkpoint=str(path), device="cpu")
    assert via_worker_path.value.code == code
    return info.value


def test_truncated_safetensors(ckpt: Path) -> None:
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:-1000])
    _assert_clear(_refused(ckpt), "checkpoint", ckpt, "truncated", "1000 missing")


def test_safetensors_with_trailing_bytes_or_a_damaged_header(ckpt: Path) -> None:
    data = ckpt.read_bytes()
    ckpt.write_bytes(data + b"\0" * 10)
    _assert_clear(_refused(ckpt), "checkpoint", ckpt, "10 unexpected bytes")
    header_len = int.from_bytes(data[:8], "little")
    ckpt.write_bytes(data[:9] + b"\xff" * (header_len - 1) + data[8 + header_len:])
    _assert_clear(_refused(ckpt), "checkpoint", ckpt, "damaged safetensors header")
    ckpt.write_bytes(data[:5])
    _assert_clear(_refused(ckpt), "checkpoint", ckpt)


def _set(path: str, value: Any):
    """An edit of the sidecar: set the dotted ``path`` (delete it when ``value`` is ``...``)."""
    def edit(sidecar: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = sidecar
        for key in parents:
            node = node[key]
        if value is ...:
            del node[leaf]
        else:
            node[leaf] = value
    return edit


@pytest.mark.parametrize(("edit", "fragment"), [
    (_set("config", ...), "'config' is missing"),
    (_set("config.sam.encoder_depth", ...), "config.sam.encoder_depth is missing"),
    (_set("include_base", "yes"), "include_base must be true/false"),
    (_set("config.input_size", "256"), 'config.input_size must be an integer, got "256"'),
    (_set("config.clip.mean", [0.5, 0.5]), "config.clip.mean must be a list of 3"),
    (_set("config.sam.encoder_depth", 0), "config.sam.encoder_depth must be positive, got 0"),
    (_set("config.prompter.num_heads", -4), "config.prompter.num_heads must be positive, got -4"),
    (_set("config.clip.model_cfg.vision_cfg.width", 0), "config.clip.model_cfg.vision_cfg.width must be positive"),
    (_set("config.clip.vision_lora.rank", 2.5), "config.clip.vision_lora.rank must be an integer"),
    (_set("config.sam.window_size", -1), "config.sam.window_size must be non-negative"),
    (_set("config.sam.mystery", 1), "config.sam.mystery is not a known setting"),
    (_set("arch", "rsrefseg3"), 'arch "rsrefseg3" is not an architecture this version knows'),
    (_set("arch", "rsrefseg"), 'config.arch "rsrefseg2" differs from arch "rsrefseg"'),
    (_set("config.sam.family", "sam3"), 'config.sam.family "sam3" is not a SAM family'),
    (_set("config.clip.model_cfg", None), 'config.clip.name "tiny-clip" is not a CLIP model known to open_clip'),
    (_set("base_weights.sam", "sam_vit_b.pth"), "base_weights.sam must be null or"),
    (_set("base_weights.clip", {"file": "x.bin", "sha256": "abc"}), "base_weights.clip must be null or"),
    (_set("meta", "demo"), "meta must be an object"),
    (_set("meta", {"title": 7}), "meta.title must be a string"),
    (_set("meta", {"gsd_range_m": [2.0, 0.5]}), "meta.gsd_range_m must be [lo, hi]"),
    (_set("meta", {"gsd_range_m": [0, 1]}), "meta.gsd_range_m must be [lo, hi]"),
    (_set("meta", {"gsd_range_m": [1]}), "meta.gsd_range_m must be [lo, hi]"),
    (_set("meta", {"gsd_range_m": ["0.3", "2"]}), "meta.gsd_range_m must be [lo, hi]"),
])
def test_malformed_sidecar_is_named_with_its_problem(ckpt: Path, edit, fragment: str) -> None:
    sidecar = ckpt.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    edit(data)
    sidecar.write_text(json.dumps(data))
    _assert_clear(_refused(ckpt), "checkpoint", sidecar, "is malformed", fragment)


@pytest.mark.parametrize(("text", "fragment"), [
    ("{ not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object"), (b"\xff\xfe{}", "is not valid JSON"),
])
def test_sidecar_that_is_not_a_json_object(ckpt: Path, text: str | bytes, fragment: str) -> None:
    sidecar = ckpt.with_suffix(".json")
    sidecar.write_bytes(text if isinstance(text, bytes) else text.encode())
    _assert_clear(_refused(ckpt), "checkpoint", sidecar, fragment)


def test_meta_is_checked_when_read_alone(ckpt: Path) -> None:
    sidecar = ckpt.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["meta"] = {"title": "Demo", "gsd_range_m": [0.3, 2.0], "dataset": "synthetic"}
    sidecar.write_text(json.dumps(data))
    assert read_checkpoint_meta(ckpt).gsd_range_m == (0.3, 2.0)
    data["meta"]["gsd_range_m"] = [0.3, "wide"]
    sidecar.write_text(json.dumps(data))
    with pytest.raises(BackendError, match=r"meta\.gsd_range_m") as info:
        read_checkpoint_meta(ckpt)
    assert info.value.code == "checkpoint"


def test_a_sound_sidecar_still_loads(ckpt: Path) -> None:
    sidecar = ckpt.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["meta"] = {"title": "t", "gsd_range_m": [0.5, 0.5], "extra_note": "kept for later versions"}
    sidecar.write_text(json.dumps(data))
    assert load_model(ckpt).meta.gsd_range_m == (0.5, 0.5)


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle is ever executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def test_pickled_checkpoint_is_refused_and_never_runs(tmp_path: Path) -> None:
    import pickle

    import torch

    marker = tmp_path / "PAYLOAD_RAN"
    for name, write in (("evil.safetensors", lambda p: p.write_bytes(pickle.dumps({"w": _Payload(marker)}))),
                        ("evil.pth", lambda p: torch.save({"w": _Payload(marker)}, p))):
        path = tmp_path / name
        write(path)
        path.with_suffix(".json").write_text("{}")
        _assert_clear(_refused(path), "checkpoint", path, "pickle")
    assert not marker.exists()


def test_a_safetensors_file_whose_length_starts_with_0x80_is_not_taken_for_a_pickle(tmp_path: Path) -> None:
    """One header length in 256 has 0x80 (a pickle's PROTO byte) as its first little-endian byte."""
    import torch
    from safetensors.torch import save_file

    model = build_model(load_config("tiny"))
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path, include_base=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    for pad in range(512):
        save_file(state, str(path), metadata={"format": "pt", "note": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    loaded = load_model(path).state_dict()
    assert all(torch.equal(loaded[k].float(), v.float()) for k, v in state.items())
