"""Metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import RefSegMetric


def _masks(pred_px: list[int], target_px: list[int], ignore_px: tuple[int, ...] = (), n: int = 10):
    pred = np.zeros(n, bool)
    pred[pred_px] = True
    target = np.zeros(n, np.uint8)
    target[target_px] = 1
    target[list(ignore_px)] = 255
    return pred[None], target[None]


def test_giou_ciou_and_strict_precision_thresholds() -> None:
    metric = RefSegMetric()
    # Sample A: I=1, U=2 → IoU 0.5 (not > 0.5). Sample B: I=3, U=4 → 0.75. Sample C: I=0, U=2 → 0.
    assert metric.update(*_masks([0, 1], [1]), category="x") == pytest.approx(0.5)
    assert metric.update(*_masks([0, 1, 2], [0, 1, 2, 3]), category="x") == pytest.approx(0.75)
    assert metric.update(*_masks([5], [6]), category="y", phrase_type="relation") == 0.0
    out = metric.compute()
    assert out["gIoU"] == pytest.approx(100 * (0.5 + 0.75 + 0) / 3)
    assert out["cIoU"] == pytest.approx(100 * 4 / 8)
    assert out["Pr@0.5"] == pytest.approx(100 / 3)  # only 0.75 is strictly above 0.5
    assert out["Pr@0.7"] == pytest.approx(100 / 3)
    assert out["Pr@0.8"] == 0.0
    assert out["per_category"]["x"]["gIoU"] == pytest.approx(62.5)
    assert out["mean_iou"] == pytest.approx((62.5 + 0.0) / 2)
    assert out["per_phrase_type"]["relation"]["n"] == 1
    assert out["per_phrase_type"]["none"]["gIoU"] == pytest.approx(62.5)


def test_ignored_pixels_count_neither_way() -> None:
    metric = RefSegMetric()
    # Predicting the ignored pixel 9 costs nothing; IoU stays 1.
    assert metric.update(*_masks([0, 9], [0], ignore_px=(9,))) == 1.0


def test_empty_union_scores_one_and_is_reported() -> None:
    metric = RefSegMetric()
    metric.update(*_masks([], []))
    metric.update(*_masks([1], [2]))
    out = metric.compute()
    assert out["n_empty_union"] == 1
    assert out["gIoU"] == pytest.approx(50.0)
    assert out["cIoU"] == 0.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="original resolution"):
        RefSegMetric().update(np.zeros((2, 2), bool), np.zeros((3, 3), np.uint8))
