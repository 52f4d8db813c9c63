"""Record readers: the three public benchmarks in their released layouts and the plain JSONL format.

A ``Record`` is one (image, sentence, target mask) triplet, independent of the format it came from. Formats
(METHOD.md §6):

- **plain JSONL** (``{split}.jsonl`` in a folder, or one ``.jsonl`` file): ``image``, ``sentence``, and the mask
  as ``mask`` (a PNG path) or ``rle`` (COCO RLE); optional ``category`` and ``phrase_type``. Relative paths
  are relative to the JSONL file's folder. ``training.synthetic`` writes this format.
- **RRSIS-D** ``ROOT/datainfo/rrsisd_{split}.jsonl``: ``sent``, ``file_name``, ``category_name`` and
  ``segmentation``, a *list* of COCO RLE of which the first is the target. Three images of the release are
  broken; their records are skipped (the authors' loader swaps in a random sample instead, which would make
  evaluation non-deterministic).
- **RefSegRS** ``ROOT/datainfo/refsegrs_{split}.jsonl``: ``sent``, ``file_name``, ``segmentation`` (one RLE).
- **RISBench** ``ROOT/datainfo/risbench_{split}.jsonl``: same fields as RefSegRS.

Benchmark images are looked up in the first existing folder of ``IMAGE_DIRS[format]`` under ROOT unless an
``image_dir`` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "rrsisd", "refsegrs", "risbench")
SPLITS = ("train", "val", "test")
RRSISD_BROKEN_IMAGES = frozenset({"22187.jpg", "20203.jpg", "00413.jpg"})
IMAGE_DIRS: dict[str, tuple[str, ...]] = {
    "rrsisd": ("images/rrsisd/JPEGImages", "JPEGImages", "images"),
    "refsegrs": ("images", "imgs"),
    "risbench": ("img_rgb", "images"),
}


@dataclass(frozen=True)
class Record:
    """One referring triplet.

    Attributes:
        image: path of the image file.
        sentence: the referring expression.
        mask_path: path of a mask image (nonzero = target), or None when ``rle`` is given.
        rle: a COCO RLE dict (``size`` [H, W], ``counts``), or None when ``mask_path`` is given.
        category: the target's category name ("none" when the dataset has none).
        phrase_type: "attribute", "position", "relation" or "none".
    """

    image: Path
    sentence: str
    mask_path: Path | None = None
    rle: dict[str, Any] | None = None
    category: str = "none"
    phrase_type: str = "none"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"record file {path} does not exist; check the dataset root and split name")
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_plain_jsonl(path: Path) -> list[Record]:
    """Records of a plain JSONL file (see the module docstring)."""
    records = []
    for line_no, raw in enumerate(_read_jsonl(path), start=1):
        if "mask" not in raw and "rle" not in raw:
            raise ValueError(f"{path}:{line_no}: a record needs a 'mask' PNG path or an 'rle' COCO RLE")
        records.append(Record(
            image=path.parent / raw["image"], sentence=raw["sentence"],
            mask_path=path.parent / raw["mask"] if "mask" in raw else None, rle=raw.get("rle"),
            category=raw.get("category", "none"), phrase_type=raw.get("phrase_type", "none")))
    return records


def _image_dir(root: Path, fmt: str, image_dir: Path | None) -> Path:
    if image_dir is not None:
        return image_dir
    for candidate in IMAGE_DIRS[fmt]:
        if (root / candidate).is_dir():
            return root / candidate
    raise FileNotFoundError(f"no image folder for {fmt} under {root} (looked for {', '.join(IMAGE_DIRS[fmt])}); "
                            "pass image_dir explicitly")


def read_benchmark(fmt: str, root: Path, split: str, image_dir: Path | None = None) -> list[Record]:
    """Records of RRSIS-D, RefSegRS or RISBench in their released ``datainfo/`` layout.

    Args:
        fmt: "rrsisd", "refsegrs" or "risbench".
        root: the dataset root holding ``datainfo/``.
        split: "train", "val" or "test".
        image_dir: the image folder, if not one of ``IMAGE_DIRS[fmt]`` under ``root``.

    Returns:
        The split's records, in file order.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    images = _image_dir(root, fmt, image_dir)
    records = []
    for raw in _read_jsonl(root / "datainfo" / f"{fmt}_{split}.jsonl"):
        if fmt == "rrsisd" and raw["file_name"] in RRSISD_BROKEN_IMAGES:
            continue
        seg = raw["segmentation"]
        records.append(Record(
            image=images / raw["file_name"], sentence=raw["sent"], rle=seg[0] if isinstance(seg, list) else seg,
            category=raw.get("category_name", "none")))
    return records


def load_records(fmt: str, source: str | Path, split: str, image_dir: str | Path | None = None) -> list[Record]:
    """Records of one split in any supported format.

    Args:
        fmt: one of ``FORMATS``.
        source: for "jsonl" a ``.jsonl`` file or a folder holding ``{split}.jsonl``; else the dataset root.
        split: "train", "val" or "test" (ignored when ``source`` is a ``.jsonl`` file).
        image_dir: benchmark image folder override.

    Returns:
        The records.
    """
    source = Path(source)
    if fmt == "jsonl":
        return read_plain_jsonl(source if source.suffix == ".jsonl" else source / f"{split}.jsonl")
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; use one of {FORMATS}")
    return read_benchmark(fmt, source, split, Path(image_dir) if image_dir is not None else None)
