"""The phrase's probability over the view as a GeoTIFF: one float32 band per phrase, nodata where the raster has
no data, on the view's grid (same CRS, transform and extent as the area read).

The file is written in full under a scratch name beside its final path (``writing._scratch_name``) and then put in
place together with the vectors (``writing.write_outputs``), so a run leaves all of its outputs or none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from backend.errors import BackendError

# The value of pixels outside the raster's data (probabilities are in [0, 1]).
PROBABILITY_NODATA = -1.0
ROWS_PER_BLOCK = 256


@dataclass(frozen=True)
class ProbabilityMaps:
    """What a probability GeoTIFF holds.

    Attributes:
        maps: per phrase, an H×W float32 array (in memory or memory-mapped) of probabilities over the view.
        names: per phrase, the band description (the phrase).
        transform: the view's affine transform (view pixel → map coordinates).
        crs: the view's CRS.
        valid_rows: ``valid_rows(row, height)`` → height×W bool, False where the raster has no data.
    """

    maps: Sequence[np.ndarray]
    names: Sequence[str]
    transform: Affine
    crs: CRS
    valid_rows: Callable[[int, int], np.ndarray]


def _blocks(height: int) -> Iterator[tuple[int, int]]:
    for row in range(0, height, ROWS_PER_BLOCK):
        yield row, min(ROWS_PER_BLOCK, height - row)


def write_probability(path: str, maps: ProbabilityMaps) -> None:
    """Write ``maps`` to ``path`` (a new file: the caller passes a scratch name), block by block.

    Raises:
        BackendError: ``bad_request`` naming ``path`` when GDAL cannot write it (a full disk says so).
    """
    height, width = maps.maps[0].shape
    profile = {"driver": "GTiff", "height": height, "width": width, "count": len(maps.maps), "dtype": "float32",
               "crs": maps.crs, "transform": maps.transform, "nodata": PROBABILITY_NODATA, "compress": "deflate",
               "tiled": width >= 256 and height >= 256, "BIGTIFF": "IF_SAFER"}
    try:
        with rasterio.open(path, "w", **profile) as dst:
            for band, name in enumerate(maps.names, 1):
                dst.set_band_description(band, name)
            for row, rows in _blocks(height):
                valid = maps.valid_rows(row, rows)
                for band, probs in enumerate(maps.maps, 1):
                    block = np.where(valid, np.clip(probs[row:row + rows], 0.0, 1.0), PROBABILITY_NODATA)
                    dst.write(block.astype(np.float32), band,
                              window=rasterio.windows.Window(0, row, width, rows))
    except rasterio.errors.RasterioError as err:
        reason = "no space left on the device" if "No space left" in str(err) else str(err).splitlines()[0][:200]
        raise BackendError("bad_request", f"cannot write the probability raster {path!r}: {reason}",
                           "choose another output folder, and check its free space and permissions") from err
