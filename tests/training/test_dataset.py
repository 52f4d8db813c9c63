"""The dataset turns records into model-ready tensors (keep-ratio resize, 255 padding) and batches them."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from training.data.dataset import ReferringDataset, collate
from training.data.records import load_records


def _write_set(tmp_path) -> None:
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 40:] = 255
    Image.fromarray(image).save(tmp_path / "wide.png")
    mask = np.zeros((40, 80), np.uint8)
    mask[:, 40:] = 1
    Image.fromarray(mask).save(tmp_path / "wide_mask.png")
    lines = [{"image": "wide.png", "mask": "wide_mask.png", "sentence": "the white half on the right"},
             {"image": "wide.png", "mask": "wide_mask.png", "sentence": "the white half", "category": "half"}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in lines))


def test_items_are_resized_keep_ratio_and_padded_with_ignore(tmp_path) -> None:
    _write_set(tmp_path)
    dataset = ReferringDataset(load_records("jsonl", tmp_path, "train"), input_size=32)
    item = dataset[0]
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["orig_hw"] == (40, 80) and item["valid_hw"] == (16, 32)
    mask = item["mask"]
    assert mask.dtype == torch.int64 and mask.shape == (32, 32)
    assert (mask[16:] == 255).all() and set(mask[:16].unique().tolist()) == {0, 1}
    assert (mask[:16, 16:] == 1).all() and (mask[:16, :16] == 0).all()
    assert float(item["image"][:, 20:].abs().sum()) == 0.0  # image padding is 0
    stretched = ReferringDataset(dataset.records, input_size=32, keep_ratio=False)[0]
    assert stretched["valid_hw"] == (32, 32) and not (stretched["mask"] == 255).any()


def test_collate_keeps_mixed_length_sentences_as_a_list(tmp_path) -> None:
    _write_set(tmp_path)
    dataset = ReferringDataset(load_records("jsonl", tmp_path, "train"), input_size=32)
    batch = collate([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].shape == (2, 32, 32)
    assert batch["sentence"] == ["the white half on the right", "the white half"]
    assert batch["category"] == ["none", "half"]


def test_flips_follow_the_phrase_and_are_reproducible_per_epoch(tmp_path) -> None:
    _write_set(tmp_path)
    records = load_records("jsonl", tmp_path, "train")
    dataset = ReferringDataset(records, input_size=32, hflip_prob=1.0, seed=1)
    # "on the right" forbids a horizontal flip: the target stays on the right.
    assert (dataset[0]["mask"][:16, 16:] == 1).all()
    # No side word: flipped, the target moves to the left.
    assert (dataset[1]["mask"][:16, :16] == 1).all()
    half = ReferringDataset(records, input_size=32, hflip_prob=0.5, seed=1)
    draws = []
    for epoch in range(6):
        half.set_epoch(epoch)
        draws.append(bool(half[1]["mask"][0, 0] == 1))
    half.set_epoch(2)
    assert bool(half[1]["mask"][0, 0] == 1) == draws[2]
    assert len(set(draws)) == 2
