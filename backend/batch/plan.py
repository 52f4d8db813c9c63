"""The plan of a batch: inputs (files, folders, VRT mosaics) → parts, each one engine run.

A raster no larger than ``part_size`` pixels on either side is one part. A larger one (a VRT mosaic of many
tiles, or a huge GeoTIFF) is cut into abutting windows of ``part_size`` pixels; objects cut by their borders are
joined again by ``backend.batch.merge``. Part ids name the input and the window, so a rerun of the same command
finds the same parts in the manifest.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.errors import BackendError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
# A mosaic part's side in raster pixels: 4096² at 0.5 m is 2 km × 2 km, a few hundred MB of canvases at most.
DEFAULT_PART_SIZE = 4096
MIN_PART_SIZE = 64


@dataclass(frozen=True)
class Part:
    """One unit of work.

    Attributes:
        part_id: unique within the batch and safe as a file stem, e.g. ``"mosaic_r0000_c4096"``.
        raster: absolute path of the raster.
        pixels: (col_off, row_off, width, height) window in raster pixels; None for the whole raster.
        source: the input this part belongs to (parts of one source are merged across their borders).
    """

    part_id: str
    raster: str
    pixels: tuple[int, int, int, int] | None
    source: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Part:
        pixels = data.get("pixels")
        return cls(part_id=str(data["part_id"]), raster=str(data["raster"]),
                   pixels=None if pixels is None else tuple(int(v) for v in pixels), source=str(data["source"]))


def raster_files(inputs: list[str]) -> list[str]:
    """The raster files named by ``inputs``: files as given, folders by their raster files (sorted, not recursive).

    Raises:
        BackendError: ``bad_request`` for an input that does not exist or a folder without rasters.
    """
    files: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p.resolve()) for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
            if not found:
                raise BackendError("bad_request", f"the folder {item!r} holds no raster file",
                                   f"give a folder with {', '.join(RASTER_SUFFIXES)} files, or the files themselves")
            files += found
        elif path.is_file():
            files.append(str(path.resolve()))
        else:
            raise BackendError("bad_request", f"input {item!r} does not exist",
                               "give raster files, folders of rasters, or a VRT mosaic")
    if not files:
        raise BackendError("bad_request", "no input raster given", "give raster files, a folder or a VRT")
    return list(dict.fromkeys(files))  # a file named twice is one input


def _stem(path: str, taken: set[str]) -> str:
    """A file-safe stem for ``path``, unique among ``taken`` (``name``, ``name-2``, …)."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).stem)[:80] or "raster"
    unique, number = stem, 2
    while unique in taken:
        unique, number = f"{stem}-{number}", number + 1
    taken.add(unique)
    return unique


def windows(width: int, height: int, part_size: int) -> list[tuple[int, int, int, int]]:
    """Abutting (col_off, row_off, width, height) windows of at most ``part_size`` covering width × height, row
    by row."""
    return [(col, row, min(part_size, width - col), min(part_size, height - row))
            for row in range(0, height, part_size) for col in range(0, width, part_size)]


def raster_size(path: str) -> tuple[int, int] | None:
    """(width, height) of a raster, or None when it cannot be opened (the part then fails with the engine's error)."""
    import rasterio

    try:
        with rasterio.open(path) as dataset:
            return dataset.width, dataset.height
    except (rasterio.errors.RasterioError, OSError):
        return None


def build_plan(inputs: list[str], part_size: int = DEFAULT_PART_SIZE) -> list[Part]:
    """The parts of a batch, in input order.

    Args:
        inputs: raster files, folders of rasters, VRT mosaics.
        part_size: side of a mosaic part in raster pixels; larger rasters are cut into windows of it.

    Returns:
        One part per small raster, one per window of a large one.

    Raises:
        BackendError: ``bad_request`` for a missing input or an unusable part size.
    """
    if part_size < MIN_PART_SIZE:
        raise BackendError("bad_request", f"part size {part_size} px is too small",
                           f"use at least {MIN_PART_SIZE} px (default {DEFAULT_PART_SIZE})")
    parts: list[Part] = []
    taken: set[str] = set()
    for path in raster_files(inputs):
        stem = _stem(path, taken)
        size = raster_size(path)
        if size is None or (size[0] <= part_size and size[1] <= part_size):
            parts.append(Part(part_id=stem, raster=path, pixels=None, source=path))
            continue
        for col, row, width, height in windows(*size, part_size):
            parts.append(Part(part_id=f"{stem}_r{row:06d}_c{col:06d}", raster=path,
                              pixels=(col, row, width, height), source=path))
    return parts
