"""The synthetic referring set: unambiguous phrases, deterministic output, files that read back."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from training.phrases import all_phrases, attribute_phrases, position_phrases, relation_phrases
from training.scene import SceneObject, render_scene
from training.synthetic import main, write_split


def _box(kind: str, colour: str, size: str, x0: int, y0: int, side: int, canvas: int = 300) -> SceneObject:
    mask = np.zeros((canvas, canvas), bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return SceneObject(kind, colour, size, (x0, y0, x0 + side, y0 + side), mask)


def test_attribute_phrases_skip_ambiguous_descriptions() -> None:
    objects = [_box("building", "red", "large", 10, 10, 40), _box("building", "red", "small", 200, 200, 10),
               _box("tank", "white", "large", 150, 20, 30)]
    texts = {(p.text, p.target) for p in attribute_phrases(objects)}
    assert ("the red building", 0) not in texts and ("the red building", 1) not in texts  # two red buildings
    assert ("the large building", 0) in texts and ("the small building", 1) in texts
    assert ("the white tank", 2) in texts


def test_position_and_relation_phrases_on_a_hand_made_layout() -> None:
    objects = [_box("building", "red", "large", 10, 10, 40), _box("building", "blue", "small", 240, 240, 12),
               _box("building", "grey", "small", 130, 135, 20), _box("pond", "blue", "large", 255, 20, 30)]
    pos = {(p.text, p.target) for p in position_phrases(objects, 300)}
    assert ("the building at the top left", 0) in pos
    assert ("the building at the bottom right", 1) in pos
    assert ("the building at the centre", 2) in pos
    assert ("the building closest to the left edge", 0) in pos
    rel = {(p.text, p.target) for p in relation_phrases(objects)}
    assert ("the largest building", 0) in rel and ("the second largest building", 2) in rel
    assert ("the smallest building", 1) in rel
    # Pond at (270, 35): building 2 centre (140,145) d≈170, building 1 (246,246) d≈212 → within margin, skipped.
    assert not any(text == "the building nearest to the pond" for text, _ in rel)


def test_every_phrase_of_random_scenes_names_exactly_one_object_of_its_kind() -> None:
    rng = np.random.default_rng(3)
    for _ in range(6):
        scene = render_scene(rng, size=256)
        for phrase in all_phrases(scene.objects, 256):
            assert 0 <= phrase.target < len(scene.objects)
            assert scene.objects[phrase.target].kind in phrase.text
            assert phrase.phrase_type in ("attribute", "position", "relation")


def test_written_split_reads_back_and_is_deterministic(tmp_path) -> None:
    main(["--out", str(tmp_path / "a"), "--train", "7", "--val", "2", "--size", "128", "--seed", "5"])
    write_split(tmp_path / "b", "train", 7, 128, 5)
    lines_a = (tmp_path / "a" / "train.jsonl").read_text().splitlines()
    assert lines_a == (tmp_path / "b" / "train.jsonl").read_text().splitlines()
    assert len(lines_a) == 7 and len((tmp_path / "a" / "val.jsonl").read_text().splitlines()) == 2
    for line in lines_a:
        record = json.loads(line)
        image = np.asarray(Image.open(tmp_path / "a" / record["image"]))
        mask = np.asarray(Image.open(tmp_path / "a" / record["mask"]))
        assert image.shape == (128, 128, 3) and mask.shape == (128, 128)
        assert set(np.unique(mask)) == {0, 255}
        assert record["category"] in record["sentence"]
        same_a = np.asarray(Image.open(tmp_path / "b" / record["mask"]))
        assert np.array_equal(mask, same_a)


def test_coloured_position_phrase_names_the_red_building_in_the_top_left_quarter() -> None:
    size = 512
    red_top_left = _box("building", "red", "large", 180, 70, 60, size)
    red_bottom_left = _box("building", "red", "large", 100, 290, 50, size)
    blue_top_left = _box("building", "blue", "small", 40, 40, 20, size)
    texts = {(p.text, p.target) for p in position_phrases([red_top_left, red_bottom_left, blue_top_left], size)}
    assert ("the red building at the top left", 0) in texts
    assert ("the red building at the bottom left", 1) in texts
    assert not any(text == "the red building at the left" for text, _ in texts)  # both red ones are on the left
