"""Parity with METHOD.md §2's size estimate: the prompter at the paper's dims is ≈ 82.8 M parameters."""

from __future__ import annotations

import pytest
import torch

from backend.model import load_config
from backend.model.prompter_v2 import CascadedPrompter


def _millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_paper_prompter_parameter_budget() -> None:
    cfg = load_config("rsrefseg2-paper")
    with torch.device("meta"):  # sizes only: no memory, no init cost
        prompter = CascadedPrompter(cfg=cfg.prompter, dim=1152, prompt_dim=cfg.sam.prompt_embed_dim,
                                    mask_size=cfg.mask_size)
    assert _millions(prompter.text_layers) == pytest.approx(37.8, abs=0.1)
    assert _millions(prompter.activation_layers) == pytest.approx(11.8, abs=0.1)
    assert _millions(prompter.prompt_layers) == pytest.approx(19.7, abs=0.1)
    assert _millions(prompter.dense_conv) == pytest.approx(11.9, abs=0.1)
    assert prompter.image_pe.numel() / 1e6 == pytest.approx(1.2, abs=0.05)
    assert _millions(prompter.sparse_head) == pytest.approx(0.26, abs=0.01)
    assert _millions(prompter) == pytest.approx(82.8, abs=0.2)
