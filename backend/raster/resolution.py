"""The resolution a view is read at: requested, native, or automatic from the checkpoint's training range.

A model sees objects at the size it was trained at. A checkpoint may record ``gsd_range_m`` = (lo, hi), the
ground metres per pixel at the model input during training; "auto" then reads

* in view mode, the whole view at the model's input size, r = clamp(view side in metres / input size, lo, hi):
  a view much larger than the model's input is read at ``hi`` (and refined on tiles), a small one at ``lo``;
* in find-all mode, tiles at clamp(native, lo, hi).

Ground metres per map unit are measured on the ellipsoid at the view's centre, so geographic rasters (degrees)
and Web Mercator (whose "metres" shrink with latitude) get the same ground resolution as UTM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rasterio.crs import CRS
from rasterio.warp import transform as transform_points

from backend.protocol import RESOLUTION_AUTO

# WGS84 ellipsoid: semi-major axis (m) and first eccentricity squared.
WGS84_A = 6_378_137.0
WGS84_E2 = 6.694379990141317e-3


@dataclass(frozen=True)
class ResolutionChoice:
    """The resolution to read a view at, and why.

    Attributes:
        resolution: map units per pixel to pass to ``make_view``; None = the raster's own.
        note: one line for the user, e.g. "0.98 m/px (automatic: the model was trained at 0.3–2 m/px)".
    """

    resolution: float | None
    note: str


def _ellipsoid_metres(lon0: float, lat0: float, lon1: float, lat1: float) -> float:
    """Distance between two nearby points on the WGS84 ellipsoid (first order: meridian and normal radii)."""
    phi = math.radians((lat0 + lat1) / 2)
    w = 1 - WGS84_E2 * math.sin(phi) ** 2
    north = WGS84_A * (1 - WGS84_E2) / w**1.5 * math.radians(lat1 - lat0)
    east = WGS84_A / math.sqrt(w) * math.cos(phi) * math.radians(lon1 - lon0)
    return math.hypot(north, east)


def ground_metres_per_unit(crs: CRS, x: float, y: float, step: float) -> tuple[float, float]:
    """Ground metres per map unit along x and y at (x, y), measured over ``step`` map units.

    Falls back to the CRS's linear unit (1 for none) when the CRS cannot be related to the Earth (local grids).
    """
    try:
        lons, lats = transform_points(crs, "EPSG:4326", [x, x + step, x], [y, y, y + step])
        mx = _ellipsoid_metres(lons[0], lats[0], lons[1], lats[1]) / step
        my = _ellipsoid_metres(lons[0], lats[0], lons[2], lats[2]) / step
        if mx > 0 and my > 0 and math.isfinite(mx * my):
            return mx, my
    except Exception:  # noqa: BLE001 - GDAL/PROJ raise many types for a CRS they cannot relate to the Earth
        pass
    try:
        factor = 1.0 if crs.is_geographic else float(crs.linear_units_factor[1])
    except Exception:  # a CRS without declared units: treat its units as metres
        factor = 1.0
    return factor, factor


def _format(units_per_px: float, metres_per_unit: float, crs: CRS) -> str:
    """"0.5 m/px", or "4.5e-06°/px ≈ 0.5 m/px" when map units are not ground metres."""
    metres = units_per_px * metres_per_unit
    if abs(metres_per_unit - 1.0) < 1e-3:
        return f"{metres:.3g} m/px"
    unit = "°" if crs.is_geographic else " map units"
    return f"{units_per_px:.3g}{unit}/px ≈ {metres:.3g} m/px"


def choose_resolution(requested: float | str | None, *, crs: CRS, native: tuple[float, float],
                      extent_size: tuple[float, float], centre: tuple[float, float], mode: str, input_size: int,
                      gsd_range_m: tuple[float, float] | None) -> ResolutionChoice:
    """Resolve a job's ``resolution`` field.

    Args:
        requested: map units per pixel, None (native) or "auto".
        crs: the raster's CRS.
        native: the raster's (x, y) pixel size in map units.
        extent_size: (width, height) of the requested window in map units.
        centre: (x, y) of the window's centre in map units.
        mode: "view" or "find-all".
        input_size: the model's input side in pixels.
        gsd_range_m: (lo, hi) metres per pixel at the model input the checkpoint was trained at, or None (a
            range that is not positive and finite counts as none).

    Returns:
        The resolution for ``make_view`` (None = native) and a one-line note.
    """
    mx, my = ground_metres_per_unit(crs, *centre, step=max(min(native), 1e-12))
    unit_m = math.sqrt(mx * my)  # ground metres of one map unit (geometric mean: pixel areas come out right)
    native_units = math.sqrt(native[0] * native[1])
    if requested is None:
        return ResolutionChoice(None, f"{_format(native_units, unit_m, crs)} (the raster's native resolution)")
    if requested != RESOLUTION_AUTO:
        return ResolutionChoice(float(requested), f"{_format(float(requested), unit_m, crs)} (requested)")
    if gsd_range_m is None or not all(math.isfinite(v) and v > 0 for v in gsd_range_m):
        return ResolutionChoice(None, f"{_format(native_units, unit_m, crs)} (automatic: native, the model records no "
                                      f"training resolution)")
    lo, hi = sorted(gsd_range_m)
    wanted_m = (max(extent_size[0] * mx, extent_size[1] * my) / input_size if mode == "view"
                else native_units * unit_m)
    chosen_m = min(max(wanted_m, lo), hi)
    units = chosen_m / unit_m
    note = f"{_format(units, unit_m, crs)} (automatic: the model was trained at {lo:g}–{hi:g} m/px)"
    if math.isclose(units, native_units, rel_tol=1e-6):
        return ResolutionChoice(None, note)
    return ResolutionChoice(units, note)


# SAM's mask decoder (SAM 1 and SAM 2.1 alike) draws one logit per 4×4 model input pixels: two 2× transposed
# convolutions over the stride-16 image embedding.
MASK_STRIDE_PX = 4


def default_min_area_m2(gsd_range_m: tuple[float, float] | None) -> float | None:
    """The smallest object the model can draw, in m²: one cell of its mask logits at its finest training scale.

    The mask decoder's output has one value per ``MASK_STRIDE_PX`` × ``MASK_STRIDE_PX`` input pixels, and the
    finest ground resolution the model was trained at is ``lo`` m/px, so no object it learnt to outline was
    smaller than (``MASK_STRIDE_PX`` · lo)² m² (5.76 m² for the demo model, trained at 0.6–2 m/px). A polygon
    under that is the upsampling's noise, not an object: reading finer than the raster (issue 25: 0.25 m/px on
    the 0.5 m sample) gave "every match" specks of 1.1–4.8 m² beside tanks of 27–32 m².

    Args:
        gsd_range_m: (lo, hi) metres per pixel at the model input the checkpoint was trained at, or None.

    Returns:
        The area in m², or None when the checkpoint records no usable training resolution.
    """
    if gsd_range_m is None or not all(math.isfinite(v) and v > 0 for v in gsd_range_m):
        return None
    return (MASK_STRIDE_PX * min(gsd_range_m)) ** 2


# A view whose ground resolution lies beyond the model's training range by more than this factor is "far
# outside" it (objects 1.5× larger or smaller than any it learnt): warned about, still run.
FAR_OUTSIDE_FACTOR = 1.5


def resolution_warnings(*, crs: CRS, native: tuple[float, float], used: tuple[float, float],
                        centre: tuple[float, float], gsd_range_m: tuple[float, float] | None) -> list[str]:
    """What the user should know about the resolution a view is read at.

    Args:
        crs: the raster's CRS.
        native: the raster's (x, y) pixel size in map units.
        used: the view's (x, y) pixel size in map units.
        centre: (x, y) of the view's centre in map units (where ground metres per unit are measured).
        gsd_range_m: (lo, hi) metres per pixel the model was trained at, or None.

    Returns:
        Up to two messages: the view is finer than the raster (upsampling invents no detail), and the view's
        ground resolution is far outside the training range; empty when neither holds.
    """
    mx, my = ground_metres_per_unit(crs, *centre, step=max(min(native), 1e-12))
    unit_m = math.sqrt(mx * my)
    native_units, used_units = math.sqrt(native[0] * native[1]), math.sqrt(used[0] * used[1])
    warnings = []
    if used_units < native_units * (1 - 1e-6):
        warnings.append(f"the view is read at {_format(used_units, unit_m, crs)}, finer than the raster's "
                        f"{_format(native_units, unit_m, crs)}: upsampling invents no detail (small objects "
                        "may be specks of it); read at the raster's resolution or coarser")
    if gsd_range_m is not None and all(math.isfinite(v) and v > 0 for v in gsd_range_m):
        lo, hi = sorted(gsd_range_m)
        metres = used_units * unit_m
        if not lo / FAR_OUTSIDE_FACTOR <= metres <= hi * FAR_OUTSIDE_FACTOR:
            side = "finer" if metres < lo else "coarser"
            looks = "larger" if metres < lo else "smaller"
            warnings.append(f"the view is read at {metres:.3g} m/px, far {side} than the {lo:g}–{hi:g} m/px the "
                            f"model was trained at: objects look {looks} than any it learnt, so answers may be "
                            "wrong; use the automatic resolution")
    return warnings
