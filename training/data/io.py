"""Reading images and target masks of records at their original resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from training.data.records import Record

IGNORE_INDEX = 255  # label value of pixels no loss or metric counts (padding)


def read_image(path: Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB (grey is repeated; extra bands and alpha are dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def decode_rle(rle: dict) -> np.ndarray:
    """A COCO RLE (compressed string/bytes or uncompressed list ``counts``) as an H×W uint8 {0, 1} mask."""
    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = coco_mask.frPyObjects(rle, height, width)
    else:
        encoded = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    return coco_mask.decode(encoded).astype(np.uint8)


def nearest_resize(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an H×W mask to ``height``×``width`` (the pixel-centre rule)."""
    rows = np.minimum(((np.arange(height) + 0.5) * mask.shape[0] / height).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * mask.shape[1] / width).astype(int), mask.shape[1] - 1)
    return mask[rows][:, cols]


def read_mask(record: Record, height: int, width: int) -> np.ndarray:
    """The record's target as an H×W uint8 {0, 1} mask at the image's size.

    Any nonzero mask value is foreground; a mask whose size differs from the image is nearest-resized to it.

    Args:
        record: the record (``mask_path`` or ``rle``).
        height, width: the image size.

    Returns:
        H×W uint8 mask.
    """
    if record.rle is not None:
        mask = decode_rle(record.rle)
    elif record.mask_path is not None:
        if not record.mask_path.is_file():
            raise FileNotFoundError(f"mask {record.mask_path} does not exist")
        with Image.open(record.mask_path) as img:
            mask = np.array(img.convert("L"))
    else:
        raise ValueError(f"record for {record.image} has neither a mask path nor an RLE")
    mask = (mask != 0).astype(np.uint8)
    if mask.shape != (height, width):
        mask = nearest_resize(mask, height, width)
    return mask
