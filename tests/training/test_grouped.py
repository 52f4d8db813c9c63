"""Image-grouped training items: each image once with its phrases, the same targets as the per-phrase dataset,
and a model forward that encodes each image once gives what encoding it per phrase gives."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch
from conftest import tiny_config
from PIL import Image

from backend.model.build import build_model
from backend.model.config import load_config
from training.config import LossConfig
from training.data.dataset import ReferringDataset
from training.data.grouped import ImageGroupedDataset, collate_groups, group_by_image
from training.data.records import load_records
from training.train import train


def _write_halves(tmp_path, sentences: list[str]) -> None:
    """One 40×80 image whose right half is white, every phrase naming that half, and a second image."""
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 40:] = 255
    Image.fromarray(image).save(tmp_path / "wide.png")
    Image.fromarray(image[:, ::-1].copy()).save(tmp_path / "other.png")
    mask = np.zeros((40, 80), np.uint8)
    mask[:, 40:] = 1
    Image.fromarray(mask).save(tmp_path / "wide_mask.png")
    lines = [{"image": "wide.png", "mask": "wide_mask.png", "sentence": s} for s in sentences]
    lines.insert(1, {"image": "other.png", "mask": "wide_mask.png", "sentence": "the other picture"})
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in lines))


def test_groups_follow_the_image_file_not_the_record_order(tmp_path) -> None:
    _write_halves(tmp_path, ["the white half", "the bright half", "the half on the right"])
    records = load_records("jsonl", tmp_path, "train")
    assert group_by_image(records) == [[0, 2, 3], [1]]


def test_items_hold_the_same_targets_as_the_per_phrase_dataset(synthetic_set) -> None:
    records = load_records("jsonl", synthetic_set, "train")
    grouped = ImageGroupedDataset(records, phrases_per_image=3, input_size=64)
    single = ReferringDataset(records, input_size=64)
    assert sum(len(g) for g in grouped.groups) == len(records) and len(grouped) < len(records)
    for index in range(len(grouped)):
        item = grouped[index]
        assert item["masks"].shape == (len(item["indices"]), 64, 64) and item["masks"].dtype == torch.int64
        for k, record_index in enumerate(item["indices"]):
            reference = single[record_index]
            assert item["sentences"][k] == reference["sentence"]
            torch.testing.assert_close(item["image"], reference["image"])
            assert torch.equal(item["masks"][k], reference["mask"])


def test_a_flip_needs_every_phrase_of_the_image_to_allow_it(tmp_path) -> None:
    _write_halves(tmp_path, ["the white half", "the half on the right"])
    records = load_records("jsonl", tmp_path, "train")
    both = ImageGroupedDataset(records, phrases_per_image=2, input_size=32, hflip_prob=1.0)[0]
    assert (both["masks"][:, :16, 16:] == 1).all()  # "on the right" forbids mirroring the shared image
    alone = ImageGroupedDataset(records[:1], phrases_per_image=2, input_size=32, hflip_prob=1.0)[0]
    assert (alone["masks"][0, :16, :16] == 1).all() and (alone["image"][:, :16, :16] == 1).all()


def test_more_phrases_than_k_are_sampled_afresh_each_epoch_and_reproducibly(tmp_path) -> None:
    _write_halves(tmp_path, ["the white half", "the bright half", "the light half", "the pale half"])
    dataset = ImageGroupedDataset(load_records("jsonl", tmp_path, "train"), phrases_per_image=2, input_size=32)
    draws = []
    for epoch in range(8):
        dataset.set_epoch(epoch)
        indices = dataset[0]["indices"]
        assert len(indices) == 2 and len(set(indices)) == 2 and indices == sorted(indices)
        assert set(indices) <= {0, 2, 3, 4}
        draws.append(tuple(indices))
    dataset.set_epoch(3)
    assert tuple(dataset[0]["indices"]) == draws[3]
    assert len(set(draws)) > 1


def test_one_encoding_per_image_gives_the_per_phrase_forward(synthetic_set) -> None:
    torch.manual_seed(0)
    model = build_model(load_config("tiny")).eval()
    dataset = ImageGroupedDataset(load_records("jsonl", synthetic_set, "train"), phrases_per_image=3,
                                  input_size=model.input_size)
    batch = collate_groups([dataset[0], dataset[1]])
    count = len(batch["sentence"])
    assert batch["image"].shape[0] == 2 and batch["image_index"].shape == (count,)
    assert batch["mask"].shape == (count, model.input_size, model.input_size)
    with torch.no_grad():
        shared = model(batch["image"], batch["sentence"], batch["image_index"])
        per_phrase = model(batch["image"][batch["image_index"]], batch["sentence"])
    torch.testing.assert_close(shared.mask_logits, per_phrase.mask_logits)


def test_grouped_training_runs_steps_over_images_with_the_distractor_term(synthetic_set, tmp_path) -> None:
    cfg = tiny_config(synthetic_set, tmp_path / "run", batch_size=2, epochs=1)
    cfg = replace(cfg, data=replace(cfg.data, phrases_per_image=3), loss=LossConfig(distractor=2.0))
    images = len(group_by_image(load_records("jsonl", synthetic_set, "train")))
    result = train(cfg)
    assert len(result.losses) == images // 2
    assert all(torch.isfinite(torch.tensor(result.losses)))
    assert result.module.criterion.distractor_weight == 2.0


def test_a_resumed_grouped_run_ends_where_the_uninterrupted_one_ends(synthetic_set, tmp_path) -> None:
    def grouped(out: str):
        cfg = tiny_config(synthetic_set, tmp_path / out, batch_size=2, max_steps=3, checkpoint_every=1)
        return replace(cfg, data=replace(cfg.data, phrases_per_image=2))  # scenes hold up to 3: a choice is drawn

    straight = train(grouped("straight"))
    first = train(grouped("crashed"), stop_after=2)
    assert first.losses == straight.losses[:2]
    resumed = train(grouped("crashed"), resume=True)
    assert resumed.losses == straight.losses[2:]
    expected = straight.module.model.state_dict()
    for name, tensor in resumed.module.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=1e-5, atol=1e-6, msg=name)
