"""Zero-shot prompts: the peak and the connected high-similarity region become SAM's point and box."""

from __future__ import annotations

import torch

from backend.model.architectures.zero_shot import zero_shot_prompts


def _map_with_region(text: torch.Tensor, rows: slice, cols: slice, grid: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    other = torch.randn(text.shape[0], generator=gen)
    other = other - (other @ text) / (text @ text) * text  # orthogonal to the text
    clip_map = other[:, None, None].repeat(1, grid, grid) + 0.01 * torch.randn(text.shape[0], grid, grid,
                                                                               generator=gen)
    clip_map[:, rows, cols] = text[:, None, None]
    clip_map[:, 2, 3] = 2 * text  # the peak (cosine is scale-free; make it unique with a tiny tilt)
    clip_map[0, 2, 3] += 1e-3
    return clip_map[None]


def test_box_and_point_cover_the_matching_region() -> None:
    text = torch.randn(16, generator=torch.Generator().manual_seed(1))
    clip_map = _map_with_region(text, slice(1, 4), slice(2, 6))
    boxes, points = zero_shot_prompts(clip_map, text[None], valid_hw=(256, 256), input_size=256)
    cell = 256 / 8
    torch.testing.assert_close(boxes[0], torch.tensor([2, 1, 6, 4]) * cell)
    assert points.shape == (1, 2)
    x, y = points[0].tolist()
    assert 2 * cell <= x < 6 * cell and 1 * cell <= y < 4 * cell


def test_padding_cells_are_ignored() -> None:
    text = torch.randn(16, generator=torch.Generator().manual_seed(2))
    clip_map = _map_with_region(text, slice(1, 4), slice(2, 6))
    clip_map[:, :, 6:, :] = 3 * text[:, None, None]  # a perfect match, but in the padded bottom rows
    boxes, _ = zero_shot_prompts(clip_map, text[None], valid_hw=(192, 256), input_size=256)
    assert boxes[0, 3] <= 192
    torch.testing.assert_close(boxes[0], torch.tensor([2.0, 1.0, 6.0, 4.0]) * 32)
