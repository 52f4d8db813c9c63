"""Base weights that are damaged, truncated, of the wrong kind or hostile pickles: a "weights" error naming the file
and what to do; a pickle's payload never runs and torch's "weights_only=False" advice never reaches the user.

Real files: the tiny SAM's state dict written with ``torch.save``/safetensors and then cut; pickles whose payload
would create a marker file if it were ever executed.
"""

from __future__ import annotations

import builtins
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend.errors import BackendError
from backend.loading import load_predictor
from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.sam.head import build_sam_parts
from backend.model.weight_io.base_weights import check_base_file, file_sha256
from backend.worker import error_reply


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if the pickle is ever executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def _hostile_files(folder: Path) -> list[Path]:
    """The same payload as a torch zip archive, a protocol-2 pickle (torch's legacy format) and a protocol-5 one."""
    payload = {"image_encoder.w": _Payload(folder / "PAYLOAD_RAN")}
    files = [folder / "evil_zip.pth", folder / "evil_p2.pth", folder / "evil_p5.pth"]
    torch.save(payload, files[0])
    files[1].write_bytes(pickle.dumps(payload, protocol=2))
    files[2].write_bytes(pickle.dumps(payload, protocol=5))
    return files


def _assert_clear(exc: BackendError, file: Path, *fragments: str) -> None:
    text = f"{exc.message} {exc.hint}"
    assert exc.code == "weights" and str(file) in exc.message and exc.hint, text
    for fragment in fragments:
        assert fragment in exc.message, text
    assert "weights_only" not in text and "Traceback" not in text
    assert error_reply("r1", exc).code == "weights"  # the worker answers with this code, not "internal"


def _sam_state() -> dict[str, torch.Tensor]:
    cfg = load_config("tiny")
    parts = build_sam_parts(cfg.sam, cfg.input_size)
    return {f"{name}.{k}": v for name, part in parts.items() for k, v in part.state_dict().items()}


def test_pickle_as_sam_weights_is_refused_and_never_runs(tmp_path: Path) -> None:
    for evil in _hostile_files(tmp_path):
        with pytest.raises(BackendError) as info:
            build_model(load_config("tiny"), sam_weights=evil)
        _assert_clear(info.value, evil, "Python objects besides tensors", "without running any of it")
    assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_pickle_as_clip_weights_of_a_checkpoint_is_refused_before_open_clip(tmp_path: Path) -> None:
    ckpt = tmp_path / "trained.safetensors"
    sidecar = save_checkpoint(build_model(load_config("tiny")), ckpt)
    for evil in _hostile_files(tmp_path):
        data = json.loads(sidecar.read_text())
        data["base_weights"]["clip"] = {"file": evil.name, "sha256": file_sha256(evil)}
        sidecar.write_text(json.dumps(data))
        with pytest.raises(BackendError) as info:
            load_model(ckpt, clip_weights=evil)
        _assert_clear(info.value, evil, "Python objects besides tensors")
    assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_pickle_as_clip_weights_in_zero_shot_is_a_weights_error(tmp_path: Path) -> None:
    evil = _hostile_files(tmp_path)[0]
    sam = tmp_path / "sam_tiny.pth"
    torch.save(_sam_state(), sam)
    with pytest.raises(BackendError) as info:
        load_predictor(config="tiny", clip_weights=str(evil), sam_weights=str(sam), mode="zero-shot", device="cpu")
    _assert_clear(info.value, evil, "Python objects besides tensors")


def test_truncated_sam_weights(tmp_path: Path) -> None:
    state = _sam_state()
    pth, st = tmp_path / "sam_tiny.pth", tmp_path / "sam_tiny.safetensors"
    torch.save(state, pth)
    save_file(state, str(st))
    build_model(load_config("tiny"), sam_weights=pth)  # whole files load
    build_model(load_config("tiny"), sam_weights=st)
    for path in (pth, st):
        path.write_bytes(path.read_bytes()[:-4096])
        with pytest.raises(BackendError) as info:
            build_model(load_config("tiny"), sam_weights=path)
        _assert_clear(info.value, path, *(("truncated",) if path == st else ("not a readable PyTorch file",)))
        assert "again" in info.value.hint


def test_files_that_are_not_weights(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    tensors_list = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], tensors_list)
    for path, fragment in ((text, "neither a safetensors file nor a PyTorch file"),
                           (tensors_list, "holds a list, not a state dict")):
        with pytest.raises(BackendError) as info:
            build_model(load_config("tiny"), sam_weights=path)
        _assert_clear(info.value, path, fragment)
    with pytest.raises(BackendError) as info:
        check_base_file("clip", tmp_path / "absent.bin")
    _assert_clear(info.value, tmp_path / "absent.bin", "not found")
