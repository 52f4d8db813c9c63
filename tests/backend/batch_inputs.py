"""Inputs and checks shared by the batch tests: a VRT mosaic of 4 copies of the sample, 3 separate copies.

Everything is real: GeoTIFFs written with rasterio, a VRT built by GDAL, GeoPackages read back with pyogrio.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyogrio.raw
import rasterio
import shapely
from affine import Affine

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_TIF = ROOT / "resources" / "sample" / "sample.tif"
DEMO = ROOT / "resources" / "models" / "demo-synthetic.safetensors"
PHRASES = ("all storage tanks", "all buildings")
# 1 m/px (inside the demo model's 0.6-2 m training range): a 512 px part is one 256 px tile, so runs stay short.
RESOLUTION = 1.0
PART_SIZE = 512


def make_inputs(folder: Path) -> list[str]:
    """Write ``mosaic.vrt`` (2×2 copies of the sample side by side, 1024² px) and ``file0..2.tif``.

    Returns:
        The batch inputs: the VRT, then the three files (7 parts at ``PART_SIZE``).
    """
    from osgeo import gdal

    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(SAMPLE_TIF) as src:
        profile, data, grid = src.profile, src.read(), src.transform
    copies = []
    for index, (dx, dy) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        path = folder / f"copy{index}.tif"
        profile.update(transform=grid @ Affine.translation(dx * src.width, dy * src.height))
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        copies.append(str(path))
    vrt = folder / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), copies).FlushCache()
    files = [str(shutil.copy(SAMPLE_TIF, folder / f"file{i}.tif")) for i in range(3)]
    return [str(vrt), *files]


def read_polygons(gpkg: str) -> dict[str, list[shapely.Polygon]]:
    """The polygons of a batch output, by query."""
    _, _, geometry, fields = pyogrio.raw.read(gpkg, columns=["query"])
    found: dict[str, list[shapely.Polygon]] = {}
    for query, polygon in zip(fields[0], shapely.from_wkb(geometry), strict=True):
        found.setdefault(str(query), []).append(polygon)
    return found


def iou(a: shapely.Geometry, b: shapely.Geometry) -> float:
    union = shapely.union(a, b).area
    return shapely.intersection(a, b).area / union if union else 0.0


def assert_same_polygons(got: str, expected: str, min_iou: float = 0.99) -> None:
    """Same polygon count per query, and each expected polygon matched by one with IoU ≥ ``min_iou``."""
    got_polygons, expected_polygons = read_polygons(got), read_polygons(expected)
    assert {q: len(p) for q, p in got_polygons.items()} == {q: len(p) for q, p in expected_polygons.items()}
    for query, polygons in expected_polygons.items():
        for polygon in polygons:
            best = max(iou(polygon, other) for other in got_polygons[query])
            assert best >= min_iou, f"{query!r}: a polygon at {polygon.centroid} is matched with IoU {best:.3f}"
