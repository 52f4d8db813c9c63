"""Synthetic referring dataset: aerial-like scenes, unambiguous phrases, PNG images and masks, plain JSONL.

``python -m training.synthetic --out DIR --train N --val N --test N --size 512 --gsd 0.3 1.0 --seed 0`` writes::

    DIR/images/{split}_{scene:06d}.png          H×W×3 uint8 RGB
    DIR/masks/{split}_{scene:06d}_{k}.png       H×W uint8, 255 = the named object, 0 = background
    DIR/{split}.jsonl                           one record per phrase (the plain JSONL format)

Each record: ``image`` and ``mask`` (paths relative to DIR), ``sentence``, ``category`` (the object's kind),
``phrase_type`` (attribute / position / relation) and ``split``. N counts records; each scene gives up to
``PHRASES_PER_SCENE`` phrases, one per phrase type where the scene allows, so the three types stay balanced.
Each scene draws its ground sampling distance uniformly from ``--gsd LO HI`` (metres per pixel; the default
0.3–1 m is the range of aerial orthophotos; one value, e.g. ``--gsd 0.5 0.5``, renders at a fixed scale such as
the bundled sample's). With ``--supersample F`` that fraction of scenes is rendered at twice the size and half the
GSD and box-averaged down (masks: majority of the 2×2 block), so the set mixes the crisp, aliased look of direct
rendering with the smoother look of a downsampled photograph. Scene ``i`` of a split is a pure function of
``(seed, split, i)``, so the output does not depend on ``--workers``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from training.phrases import PHRASE_TYPES, Phrase, all_phrases
from training.scene import Scene, render_scene

PHRASES_PER_SCENE = 3
SPLITS = ("train", "val", "test")
DEFAULT_GSD_M = (0.3, 1.0)


@dataclass(frozen=True)
class RenderSpec:
    """How a split's scenes are drawn: image side in px, GSD range in m/px, fraction rendered at 2× and averaged."""

    size: int
    gsd_m: tuple[float, float] = DEFAULT_GSD_M
    supersample: float = 0.0


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


def _downsample2(scene: Scene) -> Scene:
    """Box-average a scene rendered at 2× to half its side; masks keep pixels covered at least half."""
    height, width = scene.image.shape[:2]
    image = scene.image.reshape(height // 2, 2, width // 2, 2, 3).astype(np.float32).mean(axis=(1, 3))
    objects = []
    for obj in scene.objects:
        mask = obj.mask.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)) >= 0.5
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(dataclasses.replace(obj, mask=mask, bbox=bbox))
    return Scene(image=np.round(image).astype(np.uint8), objects=tuple(objects), gsd_m=scene.gsd_m * 2)


def render_one(spec: RenderSpec, seed: int, split: str, index: int) -> tuple[Scene, list[tuple[Phrase, np.ndarray]]]:
    """Scene ``index`` of ``split`` and its picked (phrase, target mask) records: a pure function of its args."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    gsd = float(rng.uniform(*spec.gsd_m))
    if rng.random() < spec.supersample:
        scene = _downsample2(render_scene(rng, size=2 * spec.size, gsd_m=gsd / 2))
    else:
        scene = render_scene(rng, size=spec.size, gsd_m=gsd)
    return scene, list(scene_records(scene, rng))


def write_split(out: Path, split: str, n_records: int, size: int | RenderSpec, seed: int, workers: int = 1) -> int:
    """Render scenes until ``n_records`` records exist for ``split``; returns the number of scenes rendered.

    Args:
        out: the dataset folder (created if missing).
        split: "train", "val" or "test".
        n_records: the number of JSONL records to write.
        size: the image side in pixels (GSD drawn from the default range), or a full ``RenderSpec``.
        seed: the dataset seed; scene ``i`` of the split is drawn from ``(seed, index of split, i)``.
        workers: rendering processes (the output is the same for any number).

    Returns:
        The number of scenes (images) written.
    """
    spec = size if isinstance(size, RenderSpec) else RenderSpec(size=size)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    written, scene_idx = 0, 0
    render = partial(render_one, spec, seed, split)
    with open(out / f"{split}.jsonl", "w", encoding="utf-8") as jsonl, Pool(workers) as pool:
        batch = max(workers * 4, 1)
        while written < n_records:
            for scene, records in pool.imap(render, range(scene_idx, scene_idx + batch)):
                records = records[: n_records - written]
                if records:
                    _write_scene(out, split, scene_idx, scene, records, jsonl)
                    written += len(records)
                scene_idx += 1
                if written >= n_records:
                    break
    return scene_idx


def _write_scene(out: Path, split: str, scene_idx: int, scene: Scene, records: list[tuple[Phrase, np.ndarray]],
                 jsonl) -> None:
    image_rel = f"images/{split}_{scene_idx:06d}.png"
    Image.fromarray(scene.image).save(out / image_rel)
    for k, (phrase, mask) in enumerate(records):
        mask_rel = f"masks/{split}_{scene_idx:06d}_{k}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(out / mask_rel)
        record = {"image": image_rel, "mask": mask_rel, "sentence": phrase.text,
                  "category": scene.objects[phrase.target].kind, "phrase_type": phrase.phrase_type,
                  "split": split, "gsd_m": round(scene.gsd_m, 4)}
        jsonl.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=int, default=0, help=f"number of {split} records")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--gsd", type=float, nargs=2, default=DEFAULT_GSD_M, metavar=("LO", "HI"),
                        help="ground sampling distance range in m/px, drawn per scene (default: %(default)s)")
    parser.add_argument("--supersample", type=float, default=0.0, metavar="F",
                        help="fraction of scenes rendered at 2x and box-averaged down (default: 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="rendering processes")
    args = parser.parse_args(argv)
    spec = RenderSpec(size=args.size, gsd_m=(min(args.gsd), max(args.gsd)), supersample=args.supersample)
    for split in SPLITS:
        n = getattr(args, split)
        if n > 0:
            scenes = write_split(args.out, split, n, spec, args.seed, workers=args.workers)
            print(f"{split}: {n} records from {scenes} scenes → {args.out / f'{split}.jsonl'}")


if __name__ == "__main__":
    main()
