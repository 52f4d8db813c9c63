"""A state dict that does not fit: every loader names missing keys, unexpected keys and wrong shapes the same way.

Real files: the tiny SAM's state dict saved as a ``.pth`` and changed before saving.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.errors import BackendError
from backend.model import load_config
from backend.model.sam.head import build_sam_parts
from backend.model.weight_io.base_weights import load_sam_weights
from backend.model.weight_io.state_check import key_problems


def test_key_problems_lists_each_kind_and_caps_long_lists() -> None:
    expected = {f"k{i:02d}": torch.zeros(2) for i in range(14)}
    state = {"k00": torch.zeros(3), "extra": torch.zeros(1)}
    problems = key_problems(state, expected)
    assert problems[0].startswith("missing keys: k01, k02") and problems[0].endswith("k10 … and 3 more")
    assert problems[1:] == ["unexpected keys: extra", "wrong shapes: k00 (3,) != (2,)"]
    assert key_problems(expected, expected) == []
    assert key_problems({"k00": torch.zeros(2)}, expected, required=["k00"]) == []


def _tiny_sam_parts() -> dict[str, torch.nn.Module]:
    cfg = load_config("tiny")
    return build_sam_parts(cfg.sam, cfg.input_size)


@pytest.mark.parametrize(("change", "named"), [
    (lambda s: s.update({"mask_decoder.extra.weight": torch.zeros(1)}), "unexpected keys: mask_decoder.extra.weight"),
    (lambda s: s.update({"memory.weight": torch.zeros(1)}), "unexpected keys: memory.weight"),
    (lambda s: s.pop("prompt_encoder.no_mask_embed.weight"), "missing keys: prompt_encoder.no_mask_embed.weight"),
    (lambda s: s.update({"prompt_encoder.no_mask_embed.weight": torch.zeros(1, 7)}),
     "wrong shapes: prompt_encoder.no_mask_embed.weight (1, 7) != (1, 32)"),
], ids=["unknown-part-key", "unknown-top-level-key", "missing-key", "wrong-shape"])
def test_sam_weights_that_do_not_fit_name_the_key(tmp_path: Path, change, named: str) -> None:
    parts = _tiny_sam_parts()
    state = {f"{name}.{k}": v.clone() for name, part in parts.items() for k, v in part.state_dict().items()}
    change(state)
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(state, path)
    with pytest.raises(BackendError) as info:
        load_sam_weights(_tiny_sam_parts(), path)
    assert info.value.code == "weights" and str(path) in info.value.message
    assert named in info.value.message and "vit_b" in info.value.hint


def test_fitting_sam_weights_load_into_every_part(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = _tiny_sam_parts()
    state = {f"{name}.{k}": v for name, part in source.items() for k, v in part.state_dict().items()}
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save({**state, "pixel_mean": torch.zeros(3, 1, 1), "pixel_std": torch.ones(3, 1, 1)}, path)
    target = _tiny_sam_parts()
    load_sam_weights(target, path)
    for name, part in target.items():
        for key, value in part.state_dict().items():
            torch.testing.assert_close(value, state[f"{name}.{key}"])
