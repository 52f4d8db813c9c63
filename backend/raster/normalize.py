"""Radiometric normalisation: one per-band percentile stretch per run, applied identically to every tile.

8-bit imagery is passed through unchanged: models are trained on 8-bit pictures as they come (the paper's
datasets, the synthetic set), so a per-band stretch would only shift their colours (a "white" roof turns grey or
pink under a cast-correcting stretch) and cost accuracy. Other data types (16-bit, float) have no such meaning
and are stretched.

Estimating the stretch per tile would make neighbouring tiles disagree (a bright roof darkens its tile), so
the stretch is estimated once from a decimated read of the whole view and then applied pixel by pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import BackendError
from backend.raster.reading import RasterView, read_whole

# Long side of the decimated read the percentiles are estimated from.
STRETCH_SAMPLE_SIDE = 1024


@dataclass(frozen=True)
class Stretch:
    """A per-band linear stretch: ``low`` maps to 0 and ``high`` to 255.

    Attributes:
        low: (3,) per-band lower percentile in source units.
        high: (3,) per-band upper percentile in source units.
    """

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def apply(self, data: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Stretch a tile to RGB.

        Args:
            data: 3×H×W float32 or float64 source values.
            valid: H×W bool; invalid pixels become 0.

        Returns:
            H×W×3 uint8 RGB.
        """
        working = np.float64 if data.dtype == np.float64 else np.float32  # float64 values may exceed float32
        low = np.asarray(self.low, working)[:, None, None]
        span = np.maximum(np.asarray(self.high, working) - np.asarray(self.low, working), 1e-6)
        scaled = data.astype(working)  # one working copy, updated in place to bound memory per tile
        scaled -= low
        scaled *= (255.0 / span)[:, None, None]
        np.rint(scaled, out=scaled)
        np.clip(scaled, 0, 255, out=scaled)
        rgb = np.empty((*valid.shape, 3), np.uint8)
        for band in range(3):
            rgb[..., band] = scaled[band]
        rgb[~valid] = 0
        return rgb


def _require_valid(valid: np.ndarray) -> None:
    if not valid.any():
        raise BackendError("all_nodata", "every pixel of the requested window is nodata",
                           "move the extent over the raster's data, or check the raster's nodata value")


def estimate_stretch(data: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> Stretch:
    """Per-band percentiles over the valid pixels.

    Args:
        data: 3×H×W float source values (typically a decimated read of the whole view).
        valid: H×W bool validity.
        percentiles: (low, high) percentiles in [0, 100].

    Returns:
        The stretch.

    Raises:
        BackendError: ``all_nodata`` when no pixel is valid.
    """
    _require_valid(valid)
    low, high = np.percentile(data[:, valid], percentiles, axis=1)
    return Stretch(low=tuple(float(v) for v in low), high=tuple(float(v) for v in high))


# The stretch of 8-bit bands: every value maps to itself.
IDENTITY_8BIT = Stretch(low=(0.0, 0.0, 0.0), high=(255.0, 255.0, 255.0))


def stretch_for_view(view: RasterView, percentiles: tuple[float, float] = (2.0, 98.0)) -> Stretch:
    """The run's stretch: identity for 8-bit bands, else per-band percentiles of a decimated read of the whole
    view (nodata excluded).

    Raises:
        BackendError: ``all_nodata`` when no pixel of the view is valid.
    """
    data, valid = read_whole(view, STRETCH_SAMPLE_SIDE)
    if all(dtype == "uint8" for dtype in view.dtypes):
        _require_valid(valid)
        return IDENTITY_8BIT
    return estimate_stretch(data, valid, percentiles)
