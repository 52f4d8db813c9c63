"""Synthetic referring dataset: aerial-like scenes, unambiguous phrases, PNG images and masks, plain JSONL.

``python -m training.synthetic --out DIR --train N --val N --test N --size 512 --seed 0`` writes::

    DIR/images/{split}_{scene:06d}.png          H×W×3 uint8 RGB
    DIR/masks/{split}_{scene:06d}_{k}.png       H×W uint8, 255 = the named object, 0 = background
    DIR/{split}.jsonl                           one record per phrase (the plain JSONL format)

Each record: ``image`` and ``mask`` (paths relative to DIR), ``sentence``, ``category`` (the object's kind),
``phrase_type`` (attribute / position / relation) and ``split``. N counts records; each scene gives up to
``PHRASES_PER_SCENE`` phrases, one per phrase type where the scene allows, so the three types stay balanced.
The output is a pure function of the seed and the sizes (each split draws from its own seeded stream).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from training.phrases import PHRASE_TYPES, Phrase, all_phrases
from training.scene import Scene, render_scene

PHRASES_PER_SCENE = 3
SPLITS = ("train", "val", "test")


def pick_phrases(phrases: list[Phrase], rng: np.random.Generator, limit: int = PHRASES_PER_SCENE) -> list[Phrase]:
    """Up to ``limit`` phrases, one per phrase type first (types in random order), each on a different target.

    Args:
        phrases: candidate phrases of one scene.
        rng: random generator.
        limit: the most phrases to return.

    Returns:
        The chosen phrases.
    """
    chosen: list[Phrase] = []
    for phrase_type in rng.permutation(PHRASE_TYPES):
        pool = [p for p in phrases if p.phrase_type == phrase_type and p.target not in {c.target for c in chosen}]
        if pool and len(chosen) < limit:
            chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen


def scene_records(scene: Scene, rng: np.random.Generator) -> Iterator[tuple[Phrase, np.ndarray]]:
    """(phrase, H×W bool mask of its target) for the phrases picked in one scene."""
    size = scene.image.shape[0]
    for phrase in pick_phrases(all_phrases(scene.objects, size), rng):
        yield phrase, scene.objects[phrase.target].mask


def write_split(out: Path, split: str, n_records: int, size: int, seed: int) -> int:
    """Render scenes until ``n_records`` records exist for ``split``; returns the number of scenes rendered.

    Args:
        out: the dataset folder (created if missing).
        split: "train", "val" or "test".
        n_records: the number of JSONL records to write.
        size: the image side in pixels.
        seed: the dataset seed; each split uses ``(seed, index of split)`` as its stream.

    Returns:
        The number of scenes (images) written.
    """
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    written, scene_idx = 0, 0
    with open(out / f"{split}.jsonl", "w", encoding="utf-8") as jsonl:
        while written < n_records:
            scene = render_scene(rng, size=size)
            records = list(scene_records(scene, rng))[: n_records - written]
            if not records:
                continue
            image_rel = f"images/{split}_{scene_idx:06d}.png"
            Image.fromarray(scene.image).save(out / image_rel)
            for k, (phrase, mask) in enumerate(records):
                mask_rel = f"masks/{split}_{scene_idx:06d}_{k}.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(out / mask_rel)
                record = {"image": image_rel, "mask": mask_rel, "sentence": phrase.text,
                          "category": scene.objects[phrase.target].kind, "phrase_type": phrase.phrase_type,
                          "split": split}
                jsonl.write(json.dumps(record) + "\n")
            written += len(records)
            scene_idx += 1
    return scene_idx


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=0, help=f"number of {split} records")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split in SPLITS:
        n = getattr(args, split)
        if n > 0:
            scenes = write_split(args.out, split, n, args.size, args.seed)
            print(f"{split}: {n} records from {scenes} scenes → {args.out / f'{split}.jsonl'}")


if __name__ == "__main__":
    main()
