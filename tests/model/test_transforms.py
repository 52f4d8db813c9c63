"""Input geometry: resize+pad and its inverse, in METHOD.md §1's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.model.transforms import resize_and_pad, resize_and_pad_mask, unpad_and_resize


def test_keep_ratio_pads_bottom_right() -> None:
    image = np.full((100, 200, 3), 255, np.uint8)
    tensor, valid = resize_and_pad(image, 64, keep_ratio=True)
    assert tensor.shape == (3, 64, 64) and tensor.dtype == torch.float32
    assert valid == (32, 64)
    assert torch.allclose(tensor[:, :32], torch.ones(3, 32, 64))
    assert tensor[:, 32:].abs().sum() == 0


def test_stretch_and_float_input() -> None:
    image = np.random.default_rng(0).random((50, 80, 3)).astype(np.float32)
    tensor, valid = resize_and_pad(image, 64, keep_ratio=False)
    assert valid == (64, 64) and tensor.min() >= 0 and tensor.max() <= 1


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="H×W×3"):
        resize_and_pad(np.zeros((10, 10), np.uint8), 32, True)
    with pytest.raises(ValueError, match="uint8 or float"):
        resize_and_pad(np.zeros((10, 10, 3), np.int32), 32, True)


def test_mask_padding_is_ignore_label() -> None:
    mask = np.ones((100, 200), bool)
    out = resize_and_pad_mask(mask, 64, keep_ratio=True)
    assert out.dtype == torch.uint8 and out[:32].eq(1).all() and out[32:].eq(255).all()


def test_unpad_inverts_the_geometry() -> None:
    # A mask that covers the left half of a 100×200 image survives the round trip at image resolution.
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255
    tensor, valid = resize_and_pad(image, 256, keep_ratio=True)
    logits = torch.nn.functional.interpolate((tensor[:1][None] - 0.5) * 20, size=(64, 64), mode="bilinear")
    back = unpad_and_resize(logits, valid, (100, 200))
    assert back.shape == (1, 1, 100, 200)
    assert (back[0, 0, :, :95] > 0).all() and (back[0, 0, :, 105:] < 0).all()
