"""The released files' full layout (SigLIP 2 so400m-512, SAM 2.1 Hiera-L, r = 16) maps exactly onto rsrefseg2-paper:
checked on the meta device (names and shapes only, nothing allocated)."""

from __future__ import annotations

import torch
from authors_layout import PAPER_DIMS, authors_layout

from backend.model.authors.convert import target_state
from backend.model.authors.plan import build_plan
from backend.model.config import load_config


def test_every_key_of_the_released_layout_has_its_place() -> None:
    config = load_config("rsrefseg2-paper")
    layout = authors_layout(config, PAPER_DIMS, rank=16)
    state = {k: torch.empty(shape, dtype=torch.bfloat16, device="meta") for k, shape in layout.items()}
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    prompter = sum(v.numel() for k, v in state.items() if k.startswith("prompter.") and not k.endswith(buffers))
    assert prompter == 82_773_312  # the authors' count (AUTHORS_CHECKPOINTS.md §2.3)
    lora = {k: v.numel() for k, v in state.items() if ".lora_" in k}
    assert sum(lora.values()) == 4_192_768 + 4_018_176 + 2_610_432 + 50_944  # AUTHORS_CHECKPOINTS.md §2.2
    plan = build_plan(state, target_state(config), seed=0, source_name="rrsisd.pth")
    used = {k for recipe in plan.values() for k in recipe.sources}
    assert used == {k for k in state if not k.startswith("decode_head.")}
