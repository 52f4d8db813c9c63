"""The training/evaluation dataset: records → model-ready tensors, and ``collate`` for mixed-length phrases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from backend.model.transforms import resize_and_pad, resize_and_pad_mask
from training.data.augment import phrase_safe_flip
from training.data.io import IGNORE_INDEX, read_image, read_mask
from training.data.records import Record


class ReferringDataset(Dataset):
    """Model-ready samples of referring records.

    Each item is a dict: ``image`` 3×S×S float in [0, 1] (resized, keep-ratio by default, padded bottom/right
    with 0), ``mask`` S×S int64 in {0, 1, 255} (255 = padding, ignored), ``sentence``, ``orig_hw`` (H, W),
    ``valid_hw`` (h, w), ``category``, ``phrase_type`` and ``index``.
    """

    def __init__(self, records: Sequence[Record], *, input_size: int, keep_ratio: bool = True,
                 hflip_prob: float = 0.0, vflip_prob: float = 0.0, seed: int = 0) -> None:
        """
        Args:
            records: the records.
            input_size: the model input side S.
            keep_ratio: keep the aspect ratio and pad (RSRefSeg 2) or stretch to S×S (RSRefSeg v1).
            hflip_prob, vflip_prob: phrase-safe flip probabilities (0 = off, as in the paper).
            seed: augmentation seed; item ``i`` in epoch ``e`` draws from ``(seed, e, i)`` so runs and resumed
                runs see the same flips.
        """
        self.records = list(records)
        self.input_size = input_size
        self.keep_ratio = keep_ratio
        self.hflip_prob, self.vflip_prob = hflip_prob, vflip_prob
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.records)

    def _rng(self, index: int) -> np.random.Generator:
        """The random stream of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def _prepare(self, records: Sequence[Record], rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Read the image that ``records`` share and their K masks, flip where every phrase allows, resize, pad.

        Returns:
            (image 3×S×S float in [0, 1], labels K×S×S int64 in {0, 1, 255}, original (H, W), valid (h, w)).
        """
        image = read_image(records[0].image)
        height, width = image.shape[:2]
        masks = np.stack([read_mask(r, height, width) for r in records], axis=-1)  # H×W×K
        if self.hflip_prob > 0 or self.vflip_prob > 0:
            image, masks = phrase_safe_flip(image, masks, [r.sentence for r in records], rng, self.hflip_prob,
                                            self.vflip_prob)
        tensor, valid_hw = resize_and_pad(image, self.input_size, self.keep_ratio)
        labels = torch.stack([resize_and_pad_mask(masks[..., k], self.input_size, self.keep_ratio,
                                                  pad_value=IGNORE_INDEX) for k in range(len(records))]).long()
        return tensor, labels, (height, width), tuple(valid_hw)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        tensor, labels, orig_hw, valid_hw = self._prepare([record], self._rng(index))
        return {"image": tensor, "mask": labels[0],
                "sentence": record.sentence, "orig_hw": orig_hw, "valid_hw": valid_hw,
                "category": record.category, "phrase_type": record.phrase_type, "index": index}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items: tensors are stacked (B×3×S×S, B×S×S), everything else becomes a list (sentences of
    any length stay a ``list[str]``; the model tokenizes them)."""
    batch: dict[str, Any] = {key: [item[key] for item in items] for key in items[0]}
    batch["image"] = torch.stack(batch["image"])
    batch["mask"] = torch.stack(batch["mask"])
    return batch
