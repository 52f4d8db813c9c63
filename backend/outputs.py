"""Write detections as GeoJSON (always) and GeoPackage, atomically and without clobbering.

pyogrio writes both: its raw array API takes WKB geometries and numpy field arrays in one vectorised GDAL
call, so neither fiona nor geopandas is needed. Each file is written to a temp name in the target folder and
moved into place with ``os.replace`` only once every file is complete, so a reader never sees half a file and
a failure or cancel leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from rasterio.crs import CRS

from backend.errors import BackendError
from backend.vectorize import Detection

DRIVERS = {"geojson": ("GeoJSON", ".geojson"), "gpkg": ("GPKG", ".gpkg")}


@dataclass(frozen=True)
class PhraseDetections:
    """The polygons found for one phrase.

    Attributes:
        query: the phrase.
        detections: its polygons.
    """

    query: str
    detections: tuple[Detection, ...]


def output_paths(output_dir: str, name: str, formats: Sequence[str] = ("geojson", "gpkg")) -> dict[str, str]:
    """Final path of each output format: ``output_dir/name.<ext>``."""
    return {fmt: str(Path(output_dir) / f"{name}{DRIVERS[fmt][1]}") for fmt in formats}


def check_writable(paths: dict[str, str], overwrite: bool) -> None:
    """Refuse to run when an output exists (unless ``overwrite``) or its folder is missing.

    Raises:
        BackendError: ``output_exists`` or ``bad_request``.
    """
    for path in paths.values():
        if not Path(path).parent.is_dir():
            raise BackendError("bad_request", f"output folder {str(Path(path).parent)!r} does not exist",
                               "create it or choose another output path")
        if Path(path).exists() and not overwrite:
            raise BackendError("output_exists", f"{path!r} already exists",
                               "choose another output name, delete the file, or pass --overwrite")


def _columns(layers: Sequence[PhraseDetections], model: str, checkpoint: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """WKB geometries (K,) and the field arrays [query, score, area_m2, model, checkpoint]."""
    rows = [(layer.query, d) for layer in layers for d in layer.detections]
    geometry = np.array([shapely.to_wkb(d.geometry) for _, d in rows], dtype=object)
    fields = [np.array([q for q, _ in rows], dtype=object),
              np.array([d.score for _, d in rows], dtype=np.float64),
              np.array([d.area_m2 for _, d in rows], dtype=np.float64),
              np.array([model] * len(rows), dtype=object),
              np.array([checkpoint] * len(rows), dtype=object)]
    return geometry, fields


def write_outputs(layers: Sequence[PhraseDetections], crs: CRS, paths: dict[str, str], *, model: str,
                  checkpoint: str, overwrite: bool = False) -> dict[str, str]:
    """Write every phrase's polygons into one layer per file, atomically.

    Args:
        layers: detections per phrase (a ``query`` attribute tells them apart).
        crs: the polygons' CRS.
        paths: format ("geojson" | "gpkg") → final path (see ``output_paths``).
        model: the model description stored in the ``model`` attribute.
        checkpoint: the checkpoint name stored in the ``checkpoint`` attribute.
        overwrite: replace existing files instead of refusing.

    Returns:
        ``paths``, once every file is in place.
    """
    check_writable(paths, overwrite)
    geometry, fields = _columns(layers, model, checkpoint)
    temps: dict[str, str] = {}
    try:
        for fmt, path in paths.items():
            driver, ext = DRIVERS[fmt]
            final = Path(path)
            temps[fmt] = str(final.with_name(f".{final.stem}.tmp-{os.getpid()}{ext}"))
            pyogrio.raw.write(temps[fmt], geometry, fields, ["query", "score", "area_m2", "model", "checkpoint"],
                              layer=final.stem, driver=driver, geometry_type="Polygon", crs=crs.to_wkt())
        for fmt, path in paths.items():
            os.replace(temps.pop(fmt), path)
    finally:
        for temp in temps.values():
            if os.path.exists(temp):
                os.remove(temp)
    return paths
