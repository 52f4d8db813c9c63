"""The model can learn: a few AdamW steps on one synthetic image–text–mask triple reduce BCE + Dice."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.model import build_model, load_config
from backend.model.transforms import resize_and_pad, resize_and_pad_mask


def _bce_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    probs = torch.sigmoid(logits)
    dice = 1 - 2 * (probs * target).sum() / (probs.pow(2).sum() + target.pow(2).sum() + 2e-3)
    return F.binary_cross_entropy_with_logits(logits, target) + dice


def test_a_few_steps_reduce_the_loss(tiny_name) -> None:
    cfg = load_config(tiny_name)
    model = build_model(cfg).train()
    image = np.full((200, 240, 3), (90, 120, 60), np.uint8)
    image[60:120, 80:150] = (236, 236, 230)  # a white building on grass
    mask = np.zeros((200, 240), np.uint8)
    mask[60:120, 80:150] = 1
    x, _ = resize_and_pad(image, cfg.input_size, cfg.keep_ratio)
    y = resize_and_pad_mask(mask, cfg.mask_size, cfg.keep_ratio, pad_value=0).float()[None, None]
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(10):
        loss = _bce_dice(model(x[None], ["the white building"]).mask_logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses
