"""Checkpoints: real safetensors files written and read back, strict loading, base-weight hashes."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.errors import BackendError
from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.sam.head import build_sam_parts
from backend.model.weight_io.base_weights import file_sha256


def _perturb(model: torch.nn.Module) -> None:
    """Stand-in for training: move every trained parameter and the BatchNorm statistics."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.add_(0.1)


def _outputs(model: torch.nn.Module, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(images, texts).mask_logits


def test_round_trip_trained_part(tiny_name, images, texts, tmp_path) -> None:
    model = build_model(load_config(tiny_name))
    _perturb(model)
    path = tmp_path / "ckpt.safetensors"
    sidecar = save_checkpoint(model, path)
    meta = json.loads(sidecar.read_text())
    assert meta["arch"] == model.config.arch and meta["base_weights"] == {"clip": None, "sam": None}
    saved = load_file(str(path))
    assert len(saved) < len(model.state_dict())  # only what training changes
    assert any(k.endswith("running_mean") for k in saved)  # BatchNorm statistics travel with the prompter
    assert not any(k.startswith("sam_head.image_encoder.") and "lora" not in k for k in saved)
    loaded = load_model(path)
    torch.testing.assert_close(_outputs(loaded, images, texts), _outputs(model, images, texts))
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temp files


def test_round_trip_with_base(images, texts, tmp_path) -> None:
    model = build_model(load_config("tiny"))
    with torch.no_grad():  # change a frozen base weight too: only include_base can carry it
        model.sam_head.image_encoder.patch_embed.proj.weight.mul_(1.5)
    path = tmp_path / "demo.safetensors"
    save_checkpoint(model, path, include_base=True)
    assert len(load_file(str(path))) == len(model.state_dict())
    torch.testing.assert_close(_outputs(load_model(path), images, texts), _outputs(model, images, texts))


def _saved(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(build_model(load_config("tiny")), path)
    return path, load_file(str(path))


def test_missing_key_is_named(tmp_path) -> None:
    path, state = _saved(tmp_path)
    key = sorted(state)[0]
    del state[key]
    save_file(state, str(path))
    with pytest.raises(BackendError, match="missing keys: " + key.replace(".", r"\.")) as info:
        load_model(path)
    assert info.value.code == "checkpoint"


def test_unexpected_key_is_named(tmp_path) -> None:
    path, state = _saved(tmp_path)
    state["prompter.extra_weight"] = torch.zeros(2)
    save_file(state, str(path))
    with pytest.raises(BackendError, match=r"unexpected keys: prompter\.extra_weight"):
        load_model(path)


def test_wrong_shape_is_named(tmp_path) -> None:
    path, state = _saved(tmp_path)
    state["prompter.prompts"] = torch.zeros(4, 4)
    save_file(state, str(path))
    with pytest.raises(BackendError, match=r"wrong shapes: prompter\.prompts \(4, 4\)"):
        load_model(path)


def test_pickle_is_refused_without_unpickling(tmp_path) -> None:
    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the checkpoint was unpickled",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": Boom()}))
    path.with_suffix(".json").write_text("{}")
    with pytest.raises(BackendError, match="not safetensors|pickle") as info:
        load_model(path)
    assert info.value.code == "checkpoint"
    pth = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1)}, pth)
    with pytest.raises(BackendError, match=r"zip archive \(pickle\)"):
        load_model(pth)


def test_missing_sidecar(tmp_path) -> None:
    path, _ = _saved(tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(BackendError, match=r"ckpt\.json"):
        load_model(path)


def _sam_pth(tmp_path, seed: int):
    """A real segment_anything-format .pth for the tiny SAM (keys as in sam_vit_*.pth)."""
    cfg = load_config("tiny")
    torch.manual_seed(seed)
    parts = build_sam_parts(cfg.sam, cfg.input_size)
    state = {f"{name}.{k}": v for name, part in parts.items() for k, v in part.state_dict().items()}
    state["pixel_mean"], state["pixel_std"] = torch.zeros(3, 1, 1), torch.ones(3, 1, 1)
    path = tmp_path / f"sam_tiny_{seed}.pth"
    torch.save(state, path)
    return path, parts


def test_base_weights_are_loaded_recorded_and_verified(images, texts, tmp_path) -> None:
    sam_path, parts = _sam_pth(tmp_path, seed=7)
    model = build_model(load_config("tiny"), sam_weights=sam_path)
    assert model.base_weights["sam"] == {"file": sam_path.name, "sha256": file_sha256(sam_path)}
    torch.testing.assert_close(model.sam_head.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
                               parts["prompt_encoder"].pe_layer.positional_encoding_gaussian_matrix)
    ckpt = tmp_path / "ckpt.safetensors"
    save_checkpoint(model, ckpt)
    loaded = load_model(ckpt, sam_weights=sam_path)
    torch.testing.assert_close(_outputs(loaded, images, texts), _outputs(model, images, texts))

    other, _ = _sam_pth(tmp_path, seed=8)
    with pytest.raises(BackendError, match=file_sha256(other)) as info:
        load_model(ckpt, sam_weights=other)
    assert file_sha256(sam_path) in info.value.message and info.value.code == "weights"
    with pytest.raises(BackendError, match="needs the sam base weights"):
        load_model(ckpt)
