"""Which parts of a view the refinement visits: one box per connected part of the coarse mask."""

from __future__ import annotations

import numpy as np

from backend.passes import REFINE_MARGIN_MIN_PX, refine_boxes
from backend.raster.tiling import tile_grid


def test_one_box_per_part_scaled_to_the_view_with_a_margin() -> None:
    coarse = np.zeros((64, 64), np.float32)
    coarse[2:6, 3:7] = 0.9       # a blob near the top-left corner
    coarse[50:60, 40:44] = 0.8   # another one, far away
    coarse[30, 30] = 0.4         # below the threshold: ignored
    boxes = sorted(refine_boxes(coarse, 0.5, (1024, 1024)))  # the view is 16× the coarse grid
    # Both parts are at most 160 view px long, so the margin is the minimum (10 % of 160 = 16 as well).
    m = REFINE_MARGIN_MIN_PX
    assert m == 16
    assert boxes == [(2 * 16 - m, 6 * 16 + m, 3 * 16 - m, 7 * 16 + m),
                     (50 * 16 - m, 60 * 16 + m, 40 * 16 - m, 44 * 16 + m)]


def test_diagonal_neighbours_are_one_part_and_an_empty_mask_has_none() -> None:
    coarse = np.zeros((32, 32), np.float32)
    coarse[10, 10] = coarse[11, 11] = 1.0
    assert len(refine_boxes(coarse, 0.5, (32, 32))) == 1
    assert refine_boxes(np.zeros((32, 32), np.float32), 0.5, (32, 32)) == []


def test_scattered_parts_refine_only_the_tiles_under_them() -> None:
    coarse = np.zeros((100, 100), np.float32)
    coarse[1:3, 1:3] = coarse[97:99, 97:99] = 1.0  # two specks in opposite corners of an 8000² view
    boxes = refine_boxes(coarse, 0.5, (8000, 8000))
    grid = tile_grid((8000, 8000), 1024, 128)
    touched = [t for t in grid if any(t.intersects(b) for b in boxes)]
    # One box around both would cover the whole view (all 81 tiles); one per speck needs a corner tile each.
    assert len(grid) == 81 and len(touched) == 2
