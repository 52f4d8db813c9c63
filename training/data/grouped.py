"""Training items that are images with several of their phrases: one image encoding serves K phrases.

Why: in RSRefSeg 2 the two image encoders cost about half of a training step, and they do not depend on the
phrase. Grouping the phrases of one image into one item encodes each image once per batch, and every batch
then asks the model to tell apart different objects of the same picture, which is exactly what a referring
phrase has to do (the per-phrase dataset only ever contrasts phrases of different images).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.data.dataset import ReferringDataset
from training.data.records import Record


def group_by_image(records: Sequence[Record]) -> list[list[int]]:
    """Record indices grouped by image file, groups in order of first appearance, indices in record order."""
    groups: dict[Path, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(Path(record.image), []).append(index)
    return list(groups.values())


class ImageGroupedDataset(ReferringDataset):
    """Items are images, each with up to ``phrases_per_image`` of its phrases.

    Each item is a dict: ``image`` 3×S×S float in [0, 1] (as ``ReferringDataset``), ``masks`` K×S×S int64 in
    {0, 1, 255}, ``sentences`` (K phrases), ``indices`` (their record indices). An image with more than K
    phrases gets a fresh random K of them each epoch; flips happen only when every chosen phrase allows them.
    """

    def __init__(self, records: Sequence[Record], *, phrases_per_image: int, input_size: int,
                 keep_ratio: bool = True, hflip_prob: float = 0.0, vflip_prob: float = 0.0, seed: int = 0) -> None:
        """
        Args:
            records: the records (phrases of one image need not be adjacent).
            phrases_per_image: K, the most phrases one item carries.
            input_size, keep_ratio, hflip_prob, vflip_prob, seed: as ``ReferringDataset``; item ``i`` in epoch
                ``e`` draws its phrase choice and flips from ``(seed, e, i)``.
        """
        if phrases_per_image < 1:
            raise ValueError(f"phrases_per_image must be at least 1, got {phrases_per_image}")
        super().__init__(records, input_size=input_size, keep_ratio=keep_ratio, hflip_prob=hflip_prob,
                         vflip_prob=vflip_prob, seed=seed)
        self.groups = group_by_image(self.records)
        self.phrases_per_image = phrases_per_image

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self._rng(index)
        group = self.groups[index]
        if len(group) > self.phrases_per_image:
            group = sorted(rng.choice(group, self.phrases_per_image, replace=False).tolist())
        records = [self.records[i] for i in group]
        tensor, labels, _, _ = self._prepare(records, rng)
        return {"image": tensor, "masks": labels, "sentences": [r.sentence for r in records], "indices": group}


def collate_groups(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch grouped items into the per-phrase batch the loss expects, images kept once.

    Returns:
        ``image`` U×3×S×S (one per item), ``image_index`` B int64 (the image of each phrase), ``mask`` B×S×S,
        ``sentence`` (B phrases) and ``index`` (B record indices), B = the items' phrases in total.
    """
    image_index = [u for u, item in enumerate(items) for _ in item["sentences"]]
    return {"image": torch.stack([item["image"] for item in items]),
            "image_index": torch.tensor(image_index, dtype=torch.long),
            "mask": torch.cat([item["masks"] for item in items]),
            "sentence": [s for item in items for s in item["sentences"]],
            "index": [i for item in items for i in item["indices"]]}
