"""Helpers that write real GeoTIFFs for the engine tests (rasterio, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

UTM_GRID = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)  # 0.5 m pixels, top-left at (500000, 4000000)


def write_geotiff(path: Path, data: np.ndarray, *, crs: str | None = "EPSG:32633",
                  transform: Affine = UTM_GRID,
                  nodata: float | None = None) -> Path:
    """Write ``data`` (C×H×W, any dtype) as a tiled GeoTIFF and return its path."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name,
               "transform": transform, "nodata": nodata}
    if crs is not None:
        profile["crs"] = crs
    if width >= 256 and height >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def gradient_rgb(height: int, width: int, dtype: str = "uint8", seed: int = 0) -> np.ndarray:
    """A 3×H×W test image: smooth gradients plus noise, scaled to ``dtype``'s usual range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / max(width - 1, 1), yy / max(height - 1, 1), (xx + yy) / max(height + width - 2, 1)])
    base = np.clip(base * 0.8 + 0.2 * rng.random(base.shape, dtype=np.float32), 0, 1)
    scale = {"uint8": 255, "uint16": 4000, "int16": 3000, "float32": 1.0}[dtype]
    return (base * scale).astype(dtype)
