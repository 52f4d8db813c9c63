"""Referring-segmentation metrics as the paper computes them (METHOD.md §5), plus per-group breakdowns.

Every sample is compared at its original resolution with label 255 ignored. Per sample, I and U count
target-class pixels (class 1). Reported, all ×100:

- ``gIoU``: mean of per-sample I/U; ``cIoU``: ΣI / ΣU over all samples;
- ``Pr@t`` for t in 0.5…0.9: percentage of samples with IoU strictly above t;
- ``mean_iou``: per-category mean IoU, averaged over categories (equals gIoU when there is one category).

**U = 0** (prediction and target both empty after ignoring): the paper's code yields NaN, which poisons the
mean. Here such a sample scores IoU = 1 (the prediction is exactly right), adds nothing to ΣI or ΣU, and is
counted in ``n_empty_union`` so it stays visible. The public benchmarks have no empty targets, so their
figures are unaffected.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from training.data.io import IGNORE_INDEX

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _summary(inter: np.ndarray, union: np.ndarray) -> dict[str, float]:
    """gIoU, cIoU and Pr@t (×100) of per-sample intersections and unions (1-D arrays of equal length)."""
    if len(inter) == 0:
        return {"n": 0}
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    out = {"n": int(len(iou)), "gIoU": 100.0 * float(iou.mean()),
           "cIoU": 100.0 * float(inter.sum() / union.sum()) if union.sum() > 0 else 100.0}
    for t in THRESHOLDS:
        out[f"Pr@{t}"] = 100.0 * float((iou > t).mean())
    return out


class RefSegMetric:
    """Accumulates per-sample I and U; ``compute()`` returns overall, per-category and per-phrase-type figures."""

    def __init__(self) -> None:
        self.inter: list[int] = []
        self.union: list[int] = []
        self.categories: list[str] = []
        self.phrase_types: list[str] = []

    def update(self, pred: np.ndarray, target: np.ndarray, category: str = "none",
               phrase_type: str = "none") -> float:
        """Add one sample.

        Args:
            pred: H×W bool (or {0, 1}) prediction at the original resolution.
            target: H×W uint8 ground truth in {0, 1, 255}; 255 is ignored.
            category: the sample's category name.
            phrase_type: the sample's phrase type.

        Returns:
            The sample's IoU (1.0 when U = 0).
        """
        if pred.shape != target.shape:
            raise ValueError(f"prediction {pred.shape} and target {target.shape} differ; compare at the "
                             "original resolution")
        valid = target != IGNORE_INDEX
        p = pred.astype(bool) & valid
        t = (target == 1) & valid
        inter, union = int((p & t).sum()), int((p | t).sum())
        self.inter.append(inter)
        self.union.append(union)
        self.categories.append(category)
        self.phrase_types.append(phrase_type)
        return inter / union if union else 1.0

    def _group(self, keys: list[str]) -> dict[str, dict[str, float]]:
        idx: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(keys):
            idx[key].append(i)
        inter, union = np.asarray(self.inter, float), np.asarray(self.union, float)
        return {key: _summary(inter[rows], union[rows]) for key, rows in sorted(idx.items())}

    def compute(self) -> dict[str, object]:
        """All figures: the overall summary keys at top level, ``mean_iou``, ``n_empty_union``,
        ``per_category`` and ``per_phrase_type`` (each a summary dict per group)."""
        out: dict[str, object] = dict(_summary(np.asarray(self.inter, float), np.asarray(self.union, float)))
        per_category = self._group(self.categories)
        out["mean_iou"] = float(np.mean([g["gIoU"] for g in per_category.values()])) if per_category else 0.0
        out["n_empty_union"] = int(sum(u == 0 for u in self.union))
        out["per_category"] = per_category
        out["per_phrase_type"] = self._group(self.phrase_types)
        return out
