"""SAM 2.1 ``.pt`` loading: strict apart from the video-memory modules, which are skipped by name.

The checkpoint here is our own parts' state dict in SAM 2.1's layout plus SAM2Base's memory keys (their real
names), saved as Meta saves it: ``torch.save({"model": state})``. (Loading a real SAM2Base state dict is covered
in ``test_sam2_reference.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from backend.errors import BackendError
from backend.model import load_config
from backend.model.build import build_sam_head
from backend.model.sam2 import build_sam2_parts

MEMORY_STATE = {
    "maskmem_tpos_enc": torch.zeros(7, 1, 1, 16), "no_mem_pos_enc": torch.zeros(1, 1, 32),
    "no_obj_ptr": torch.zeros(1, 32), "no_obj_embed_spatial": torch.zeros(1, 16),
    "memory_attention.layers.0.self_attn.q_proj.weight": torch.zeros(32, 32),
    "memory_encoder.out_proj.weight": torch.zeros(16, 32, 1, 1), "mask_downsample.weight": torch.zeros(1, 1, 4, 4),
    "obj_ptr_proj.layers.0.weight": torch.zeros(32, 32), "obj_ptr_tpos_proj.weight": torch.zeros(16, 32),
}


def _checkpoint_state() -> dict[str, torch.Tensor]:
    """Meta-layout state of a randomly initialised tiny SAM 2.1 (seed 5), memory keys included."""
    torch.manual_seed(5)
    holder = nn.Module()
    for name, part in build_sam2_parts(load_config("tiny-sam2").sam, 256).items():
        setattr(holder, name, part)
    return {**holder.state_dict(), **MEMORY_STATE}


def _save(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "sam2.1_hiera_tiny_test.pt"
    torch.save({"model": state}, path)
    return path


def test_loads_strictly_ignoring_memory_modules_by_name(tmp_path: Path) -> None:
    state = _checkpoint_state()
    head = build_sam_head(load_config("tiny-sam2"), _save(tmp_path, state))
    loaded = head.state_dict()
    for key in ("no_mem_embed", "sam_mask_decoder.conv_s0.weight", "sam_prompt_encoder.mask_downscaling.0.weight",
                "sam_mask_decoder.pred_obj_score_head.layers.2.bias"):
        torch.testing.assert_close(loaded[key], state[key])
    # LoRA wraps after loading: the frozen base under the adapter holds the checkpoint's weight.
    torch.testing.assert_close(loaded["image_encoder.trunk.blocks.0.attn.qkv.base.weight"],
                               state["image_encoder.trunk.blocks.0.attn.qkv.weight"])
    torch.testing.assert_close(loaded["image_encoder.neck.convs.3.conv.base.weight"],
                               state["image_encoder.neck.convs.3.conv.weight"])


@pytest.mark.parametrize(("change", "named"), [
    (lambda s: s.update({"sam_mask_decoder.extra_head.weight": torch.zeros(1)}), "sam_mask_decoder.extra_head.weight"),
    (lambda s: s.update({"memory_bank.weight": torch.zeros(1)}), "memory_bank.weight"),
    (lambda s: s.pop("image_encoder.trunk.blocks.1.attn.qkv.weight"), "image_encoder.trunk.blocks.1.attn.qkv.weight"),
    (lambda s: s.pop("no_mem_embed"), "no_mem_embed"),
    (lambda s: s.update({"no_mem_embed": torch.zeros(1, 1, 64)}),
     "wrong shapes: no_mem_embed (1, 1, 64) != (1, 1, 32)"),
], ids=["unknown-key", "unknown-top-level-key", "missing-trunk-key", "missing-no-mem-embed", "wrong-shape"])
def test_any_other_difference_is_an_error_naming_the_key(tmp_path: Path, change, named: str) -> None:
    state = _checkpoint_state()
    change(state)
    with pytest.raises(BackendError) as info:
        build_sam_head(load_config("tiny-sam2"), _save(tmp_path, state))
    assert info.value.code == "weights"
    assert named in str(info.value)


@pytest.mark.parametrize("content", [
    lambda state: state,  # a bare state dict, not {"model": ...}
    lambda state: {"model": {**state, "step": 3}},  # something besides tensors in it
], ids=["bare-state-dict", "non-tensor-entry"])
def test_a_file_without_a_model_state_dict_of_tensors_is_refused(tmp_path: Path, content) -> None:
    path = tmp_path / "not_sam2.pt"
    torch.save(content(_checkpoint_state()), path)
    with pytest.raises(BackendError, match="no 'model' state dict"):
        build_sam_head(load_config("tiny-sam2"), path)
