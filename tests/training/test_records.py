"""Record readers for the released benchmark layouts and plain JSONL, masks and phrase-safe flips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from training.data.augment import may_flip_horizontally, may_flip_vertically, phrase_safe_flip
from training.data.io import read_image, read_mask
from training.data.records import load_records


def _rle(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _write_image(path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 7, np.uint8)).save(path)


def test_rrsisd_layout_uses_first_rle_skips_broken_images_and_keeps_categories(tmp_path) -> None:
    images = tmp_path / "images" / "rrsisd" / "JPEGImages"
    target = np.zeros((8, 8), np.uint8)
    target[2:4, 1:5] = 1
    rows = []
    for name in ("00001.jpg", "22187.jpg"):
        _write_image(images / name, 8, 8)
        rows.append({"split": "test", "image_id": 1, "sent": "the baseball field", "file_name": name,
                     "category_id": 3, "category_name": "baseballfield", "ann_id": 9, "bbox": [1, 2, 5, 4],
                     "segmentation": [_rle(target)], "area": 8})
    (tmp_path / "datainfo").mkdir()
    (tmp_path / "datainfo" / "rrsisd_test.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    records = load_records("rrsisd", tmp_path, "test")
    assert len(records) == 1 and records[0].image == images / "00001.jpg"
    assert records[0].category == "baseballfield" and records[0].sentence == "the baseball field"
    assert np.array_equal(read_mask(records[0], 8, 8), target)
    assert read_image(records[0].image).shape == (8, 8, 3)


def test_risbench_mismatched_mask_is_nearest_resized(tmp_path) -> None:
    _write_image(tmp_path / "img_rgb" / "test_1_0.png", 8, 8)
    small = np.zeros((4, 4), np.uint8)
    small[0, 0] = 1
    row = {"split": "test", "image_id": "test_1_0.png", "file_name": "test_1_0.png",
           "sent": "The ship that is closest to the top edge of the image.", "segmentation": _rle(small)}
    (tmp_path / "datainfo").mkdir()
    (tmp_path / "datainfo" / "risbench_test.jsonl").write_text(json.dumps(row) + "\n")
    (record,) = load_records("risbench", tmp_path, "test")
    mask = read_mask(record, 8, 8)
    assert mask.shape == (8, 8) and mask[:2, :2].all() and mask.sum() == 4
    assert record.category == "none"


def test_plain_jsonl_with_png_mask_and_rle(tmp_path) -> None:
    _write_image(tmp_path / "a.png", 6, 6)
    png = np.zeros((6, 6), np.uint8)
    png[1, 1] = 128  # any nonzero value is foreground
    Image.fromarray(png).save(tmp_path / "m.png")
    rle_target = np.eye(6, dtype=np.uint8)
    lines = [{"image": "a.png", "sentence": "x", "mask": "m.png", "category": "tank", "phrase_type": "relation"},
             {"image": "a.png", "sentence": "y", "rle": _rle(rle_target)}]
    (tmp_path / "val.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    first, second = load_records("jsonl", tmp_path, "val")
    assert first.phrase_type == "relation" and first.category == "tank"
    assert read_mask(first, 6, 6).sum() == 1 and read_mask(first, 6, 6)[1, 1] == 1
    assert np.array_equal(read_mask(second, 6, 6), rle_target)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"image": "a.png", "sentence": "z"}))
    with pytest.raises(ValueError, match="'mask' PNG path or an 'rle'"):
        load_records("jsonl", tmp_path / "bad.jsonl", "val")


def test_missing_layout_errors_say_what_to_do(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="pass image_dir"):
        load_records("refsegrs", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown dataset format"):
        load_records("coco", tmp_path, "train")


def test_flips_respect_directional_words() -> None:
    assert not may_flip_horizontally("the building at the top left")
    assert not may_flip_vertically("the building at the top left")
    assert may_flip_horizontally("the tank north of the pond") and not may_flip_vertically("the tank north of it")
    assert may_flip_vertically("the leftmost tank") and not may_flip_horizontally("the leftmost tank")
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    mask = np.array([[1, 0], [0, 0]], np.uint8)
    rng = np.random.default_rng(0)
    same_img, same_mask = phrase_safe_flip(image, mask, "the tank on the left", rng, hflip_prob=1.0)
    assert np.array_equal(same_img, image) and np.array_equal(same_mask, mask)
    flip_img, flip_mask = phrase_safe_flip(image, mask, "the red building", rng, 1.0, 1.0)
    assert np.array_equal(flip_mask, [[0, 0], [0, 1]]) and np.array_equal(flip_img, image[::-1, ::-1])
