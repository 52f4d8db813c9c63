"""Georeferenced raster input: validate a file, define the view the user asked for, read it in windows.

A ``RasterView`` is the pixel grid the engine works on: a window of the source raster resampled to a target
ground resolution. Every read goes through ``read_tile`` (or ``read_whole`` for decimated overviews), which
reads only the source pixels it needs, so memory never grows with the raster.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Interleaving, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from backend.errors import BackendError

# Default bound on the view's pixel count (16384² ≈ 268 Mpx): beyond it a run would take hours on a CPU.
MAX_VIEW_PIXELS = 2**28


@dataclass(frozen=True)
class RasterView:
    """The pixel grid the engine works on: a source window resampled to ``shape``.

    Attributes:
        path: the raster file.
        window: (col_off, row_off, width, height) in source pixels (may be fractional).
        shape: (height, width) of the view at the target resolution.
        transform: affine transform of the view's grid (view pixel → map coordinates).
        crs: the raster's coordinate reference system.
        bands: 1-based source band indices read as R, G, B (a single band is replicated).
        nodata: the source nodata value of each selected band (None where a band has none).
        dtypes: the storage data type of each selected band ("uint8", "uint16", "float32", …); "uint8" for a
            paletted band read through its colour table.
        flip_rows: the source is stored south-up (positive y pixel size): view row 0 is the source's last row.
        flip_cols: the source is stored east-left (negative x pixel size): view column 0 is its last column.
        palette: for a paletted band, its colour table as a 256×4 uint8 RGBA lookup (``bands`` repeats the
            band, which is read as indices and expanded to RGB); None otherwise.
    """

    path: str
    window: tuple[float, float, float, float]
    shape: tuple[int, int]
    transform: Affine
    crs: CRS
    bands: tuple[int, ...]
    nodata: tuple[float | None, ...]
    dtypes: tuple[str, ...]
    flip_rows: bool = False
    flip_cols: bool = False
    palette: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def resolution(self) -> tuple[float, float]:
        """(x, y) ground size of one view pixel in map units."""
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) source pixels per view pixel (> 1 means the view is coarser than the source)."""
        return self.window[2] / self.shape[1], self.window[3] / self.shape[0]


def open_raster(path: str) -> rasterio.DatasetReader:
    """Open ``path`` with GDAL, refusing what the engine cannot read whole or cannot georeference.

    Everything checked here is cheap (headers and block offsets, no pixels), so a damaged file is refused
    before a model runs rather than half-way through a run.

    Raises:
        BackendError: ``not_a_raster`` when GDAL cannot read it or it is a pipe or device; ``bad_raster`` when
            it is truncated or a VRT source is missing; ``no_crs`` when it has no CRS or no geotransform
            (GCP/RPC-only rasters say so).
    """
    _refuse_special_file(path)
    try:
        dataset = rasterio.open(path)
    except RasterioIOError as err:
        raise BackendError("not_a_raster", f"cannot open {path!r} as a raster: {err}",
                           "choose a GDAL-readable raster such as a GeoTIFF") from err
    try:
        check_complete(dataset, path)
        check_georeferenced(dataset, path)
    except BaseException:
        dataset.close()
        raise
    return dataset


def _refuse_special_file(path: str, subject: str | None = None) -> None:
    """Refuse a named pipe, socket or device: GDAL would wait forever on a pipe nobody writes to.

    Paths that do not exist pass (GDAL also opens virtual paths, URLs and subdatasets), as do folders (some
    formats are folders). ``subject`` starts the message (default: the quoted path)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BackendError("not_a_raster", f"{subject or repr(path)} is not a regular file (a pipe, socket or "
                           "device)", "choose a raster file such as a GeoTIFF (and VRT sources that are files)")


def _local_file(name: str) -> bool:
    """Whether ``name`` is a plain file path (not a GDAL virtual path such as /vsicurl/ or a URL)."""
    return not name.startswith("/vsi") and "://" not in name


# How deep VRTs that read other VRTs are followed when their sources are checked.
MAX_VRT_DEPTH = 16


def _local_sources(dataset: rasterio.DatasetReader, path: str, seen: set[str], depth: int = 0) -> list[str]:
    """Every local file ``dataset`` reads from, following VRTs inside VRTs (GDAL lists only the first level).

    Raises:
        BackendError: ``not_a_raster`` for a source that is a pipe, socket or device: the first read would wait
            for ever, where cancel cannot reach it.
    """
    found = []
    for name in dataset.files[1:]:
        if not _local_file(name):
            continue
        _refuse_special_file(name, f"{path!r} reads from {name!r}, which")
        found.append(name)
        real = os.path.realpath(name)
        if name.lower().endswith(".vrt") and os.path.isfile(name) and real not in seen and depth < MAX_VRT_DEPTH:
            seen.add(real)
            try:
                with rasterio.open(name) as inner:
                    found += _local_sources(inner, path, seen, depth + 1)
            except RasterioIOError:
                continue  # an unreadable inner VRT fails at its first read with GDAL's reason
    return found


def check_complete(dataset: rasterio.DatasetReader, path: str) -> None:
    """Refuse a raster whose pixels cannot all be read: a VRT with a missing source, a truncated GeoTIFF.

    GDAL opens both without complaint and fails only when the missing bytes are read. A GeoTIFF is truncated
    when a data block's offset + size lies beyond the end of the file (an interrupted copy or download).

    Raises:
        BackendError: ``bad_raster`` naming the file and what is missing.
    """
    sources = _local_sources(dataset, path, seen={os.path.realpath(dataset.name)})
    missing = [name for name in sources if not os.path.exists(name)]
    if missing:
        raise BackendError("bad_raster", f"{path!r} refers to {len(missing)} source file(s) that do not exist, "
                           f"e.g. {missing[0]!r}",
                           "restore the missing files, or rebuild the VRT (gdalbuildvrt) from files that exist")
    if dataset.driver != "GTiff" or not _local_file(dataset.name):
        return
    file_info = os.stat(dataset.name)
    size = file_info.st_size
    end = _tiff_data_end_cached(dataset, (os.path.realpath(dataset.name), size, file_info.st_mtime_ns))
    if end > size:
        raise BackendError("bad_raster", f"{path!r} is truncated: its image data needs {end:,} bytes but the "
                           f"file has {size:,}",
                           "the file is incomplete (an interrupted copy or download?): copy or export it again; "
                           "`gdalinfo -checksum` shows whether a file reads whole")


# A GeoTIFF with more blocks than this per band has an evenly spaced sample of them checked (plus the last).
MAX_CHECKED_BLOCKS = 65536


# (real path, size, mtime) → data end: a run opens its raster several times, the file is scanned once.
_DATA_ENDS: dict[tuple[str, int, int], int] = {}


def _tiff_data_end_cached(dataset: rasterio.DatasetReader, key: tuple[str, int, int]) -> int:
    if key not in _DATA_ENDS:
        if len(_DATA_ENDS) >= 256:
            _DATA_ENDS.clear()
        _DATA_ENDS[key] = _tiff_data_end(dataset)
    return _DATA_ENDS[key]


def _tiff_data_end(dataset: rasterio.DatasetReader) -> int:
    """The largest offset + size of the GeoTIFF's data blocks (0 for none), from the TIFF directory only."""
    block_h, block_w = dataset.block_shapes[0]
    rows, cols = -(-dataset.height // block_h), -(-dataset.width // block_w)
    count = rows * cols
    step = max(1, count // MAX_CHECKED_BLOCKS)
    indices = sorted({*range(0, count, step), count - 1})
    separate = dataset.interleaving == Interleaving.band
    end = 0
    for band in dataset.indexes if separate else (1,):
        for index in indices:
            row, col = divmod(index, cols)
            offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
            nbytes = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
            if offset and nbytes:  # a sparse (unwritten) block has neither
                end = max(end, int(offset) + int(nbytes))
    return end


def check_georeferenced(dataset: rasterio.DatasetReader, path: str) -> None:
    """Refuse a raster without a CRS and a geotransform, saying what it has instead.

    Raises:
        BackendError: ``no_crs``; for a raster placed by ground control points or RPCs, a message that says so
            and how to warp it onto a map grid.
    """
    gcps, _ = dataset.gcps
    if dataset.transform.is_identity and (gcps or dataset.rpcs):
        how = f"{len(gcps)} ground control points (GCPs)" if gcps else "rational polynomial coefficients (RPCs)"
        stem = os.path.splitext(os.path.basename(path))[0]
        rpc = " -rpc" if not gcps else ""
        raise BackendError("no_crs", f"{path!r} is georeferenced by {how}, not by a geotransform",
                           f"warp it to a map grid first, e.g. gdalwarp{rpc} -r bilinear -t_srs EPSG:xxxx "
                           f"{os.path.basename(path)} {stem}_warped.tif (or QGIS's Raster > Projections > Warp)")
    if dataset.crs is None:
        raise BackendError("no_crs", f"{path!r} has no coordinate reference system",
                           "georeference it first, e.g. gdal_translate -a_srs EPSG:xxxx or QGIS's Georeferencer")
    if dataset.transform.is_identity:
        raise BackendError("no_crs", f"{path!r} has a CRS but no geotransform: its pixels have no place on the map",
                           "georeference it first, e.g. gdal_translate -a_ullr ULX ULY LRX LRY, or QGIS's "
                           "Georeferencer")


def select_bands(dataset: rasterio.DatasetReader, bands: Sequence[int] | None) -> tuple[int, ...]:
    """The 1-based bands to read as RGB.

    Args:
        dataset: an open raster.
        bands: requested 1-based indices (1 or 3 of them), or None for the bands the file declares as
            red/green/blue, else its first three, else its only band.

    Returns:
        Three band indices (a single band is repeated).
    """
    count = dataset.count
    if bands is None:
        interp = list(dataset.colorinterp)
        rgb = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if all(ci in interp for ci in rgb):
            return tuple(interp.index(ci) + 1 for ci in rgb)
        bands = (1, 2, 3) if count >= 3 else (1,)
    bands = tuple(int(b) for b in bands)
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise BackendError("bad_band", f"band {bad[0]} does not exist: the raster has {count} band(s)",
                           f"choose bands between 1 and {count}, e.g. --bands 1,2,3")
    if len(bands) == 1:
        return bands * 3
    if len(bands) != 3:
        raise BackendError("bad_band", f"{len(bands)} bands requested; the model reads 1 or 3",
                           "give three bands (R,G,B) or one band to replicate")
    return bands


def _finite(values: Sequence[float], what: str, hint: str) -> tuple[float, ...]:
    """``values`` as floats; refuse NaN and infinities, which would otherwise turn into a 1-pixel or empty view."""
    numbers = tuple(float(v) for v in values)
    if not all(math.isfinite(v) for v in numbers):
        raise BackendError("bad_request", f"the {what} {numbers} is not made of finite numbers", hint)
    return numbers


def _extent_window(dataset: rasterio.DatasetReader, extent: tuple[float, ...]) -> Window:
    """The source window of ``extent`` cut to the raster's bounds first, so that a huge extent (±1e308) cannot
    overflow the pixel arithmetic; an extent beside the raster gives an empty window."""
    left, bottom, right, top = dataset.bounds
    x0, x1 = max(extent[0], min(left, right)), min(extent[2], max(left, right))
    y0, y1 = max(extent[1], min(bottom, top)), min(extent[3], max(bottom, top))
    if not (x1 > x0 and y1 > y0):
        return Window(0, 0, 0, 0)
    inverse = ~dataset.transform  # not rasterio's from_bounds, which refuses south-up grids
    cols, rows = zip(*(inverse * (x, y) for x in (x0, x1) for y in (y0, y1)), strict=True)
    return Window(min(cols), min(rows), max(cols) - min(cols), max(rows) - min(rows))


def _clip_window(window: Window, dataset: rasterio.DatasetReader, what: str) -> Window:
    """Intersect ``window`` with the raster; refuse one that does not overlap it."""
    col0, row0 = max(window.col_off, 0.0), max(window.row_off, 0.0)
    col1 = min(window.col_off + window.width, dataset.width)
    row1 = min(window.row_off + window.height, dataset.height)
    if col1 - col0 < 1 or row1 - row0 < 1:
        raise BackendError("window_outside", f"the requested {what} does not overlap the raster",
                           f"choose an extent inside the raster's bounds {tuple(round(b, 3) for b in dataset.bounds)}"
                           " (in its CRS)")
    return Window(col0, row0, col1 - col0, row1 - row0)


def make_view(path: str, *, extent: Sequence[float] | None = None, pixels: Sequence[float] | None = None,
              resolution: float | None = None, bands: Sequence[int] | None = None,
              max_pixels: int = MAX_VIEW_PIXELS, min_side: int = 0) -> RasterView:
    """Define the view of ``path`` to segment.

    Args:
        path: a GDAL-readable raster with a CRS.
        extent: (xmin, ymin, xmax, ymax) in the raster's CRS; clipped to the raster.
        pixels: (col_off, row_off, width, height) in source pixels (exclusive with ``extent``); clipped.
        resolution: target ground size of a pixel in map units (None: the raster's own).
        bands: 1-based band indices (see ``select_bands``).
        max_pixels: refuse views with more pixels than this.
        min_side: refuse a ``resolution`` that makes the view's longer side shorter than this (``MIN_VIEW_SIDE``
            for a resolution the user typed), unless the window is that small at its own resolution.

    Returns:
        The view; nothing is read yet.
    """
    if extent is not None and pixels is not None:
        raise BackendError("bad_request", "both an extent and a pixel window were given", "give only one")
    with open_raster(path) as dataset:
        if dataset.transform.a == 0 or dataset.transform.e == 0:
            raise BackendError("bad_raster", f"{path!r} has a pixel size of zero "
                               f"({dataset.transform.a:g} × {dataset.transform.e:g} map units)",
                               "its geotransform is damaged: set the pixel size again, e.g. gdal_translate "
                               "-a_ullr ULX ULY LRX LRY, or gdal_edit.py -a_ullr")
        if not dataset.transform.is_rectilinear:
            raise BackendError("bad_request", f"{path!r} has a rotated geotransform",
                               "warp it to a north-up grid first (gdalwarp)")
        chosen = select_bands(dataset, bands)
        palette = _palette(dataset, chosen)
        if extent is not None:
            xmin, ymin, xmax, ymax = _finite(extent, "extent", "give xmin,ymin,xmax,ymax as finite numbers in the "
                                                               "raster's CRS")
            if not (xmax > xmin and ymax > ymin):
                raise BackendError("bad_request", f"extent {tuple(extent)} is empty",
                                   "give xmin,ymin,xmax,ymax with xmax > xmin and ymax > ymin")
            window = _clip_window(_extent_window(dataset, (xmin, ymin, xmax, ymax)), dataset, "extent")
        elif pixels is not None:
            col, row, width, height = _finite(pixels, "pixel window", "give col,row,width,height in pixels")
            window = _clip_window(Window(col, row, width, height), dataset, "pixel window")
        else:
            window = Window(0, 0, dataset.width, dataset.height)
        src_res = abs(dataset.transform.a), abs(dataset.transform.e)
        if resolution is not None and not (math.isfinite(resolution) and resolution > 0):
            raise BackendError("bad_request", f"resolution {resolution} is not a positive number",
                               "give the ground size of a pixel in the raster's map units")
        out_w, out_h = _view_size(window, src_res, resolution, max_pixels)
        if resolution and dataset.crs.is_geographic:
            _refuse_metres_as_degrees(resolution, src_res, (out_w, out_h), dataset.crs)
        if resolution and max(out_w, out_h) < min_side <= max(window.width, window.height):
            coarsest = max(window.width * src_res[0], window.height * src_res[1]) / min_side
            raise BackendError("bad_request", f"resolution {resolution:g} makes the view {out_w}×{out_h} pixels, "
                               "too coarse to show anything", f"choose a finer resolution (≤ {coarsest:.4g} map "
                               "units per pixel), or leave it automatic")
        base = dataset.window_transform(window)
        transform = base @ Affine.scale(window.width / out_w, window.height / out_h)
        flip_rows, flip_cols = transform.e > 0, transform.a < 0
        if flip_rows:  # south-up: the view is north-up, so "top left" is the map's top left
            transform = transform @ Affine.translation(0, out_h) @ Affine.scale(1, -1)
        if flip_cols:
            transform = transform @ Affine.translation(out_w, 0) @ Affine.scale(-1, 1)
        nodata = tuple(dataset.nodatavals[b - 1] for b in chosen)
        dtypes = ("uint8",) * 3 if palette is not None else tuple(dataset.dtypes[b - 1] for b in chosen)
        return RasterView(path=str(path), window=(window.col_off, window.row_off, window.width, window.height),
                          shape=(out_h, out_w), transform=transform, crs=dataset.crs, bands=chosen, nodata=nodata,
                          dtypes=dtypes, flip_rows=flip_rows, flip_cols=flip_cols, palette=palette)


def _view_size(window: Window, src_res: tuple[float, float], resolution: float | None,
               max_pixels: float) -> tuple[int, int]:
    """The view's (width, height) in pixels for ``window`` read at ``resolution`` (None: the source's own).

    The size is judged in floating point before any integer is made, so a resolution as fine as 1e-300 (a view
    of ~10^600 pixels, or an infinite one) is refused like any other view too large, never an overflow.

    Raises:
        BackendError: ``too_large`` when the view would exceed ``max_pixels``; the hint gives the finest
            resolution that fits (the window's ground area divided by the pixel budget).
    """
    width = window.width * (src_res[0] / resolution if resolution else 1.0)
    height = window.height * (src_res[1] / resolution if resolution else 1.0)
    if max(1.0, width) * max(1.0, height) > max_pixels:
        ground_area = (window.width * src_res[0]) * (window.height * src_res[1])
        fit = math.sqrt(ground_area / max_pixels)
        shown = f"{width:.4g}×{height:.4g}" if max(width, height) >= 1e9 else f"{round(width)}×{round(height)}"
        raise BackendError("too_large", f"the view at resolution {resolution or src_res[0]:g} would be {shown} "
                           f"pixels, more than the {max_pixels:,} one run may take",
                           f"choose a coarser resolution (≥ {fit:.4g} map units per pixel) or a smaller extent")
    return max(1, round(width)), max(1, round(height))


def _palette(dataset: rasterio.DatasetReader, bands: tuple[int, ...]) -> np.ndarray | None:
    """The colour table of a single paletted band as a 256×4 uint8 RGBA lookup, or None.

    A paletted band holds class indices, not brightness: read as grey, a green field and a red roof could be the
    same value. Indices without an entry map to transparent black (invalid)."""
    band = bands[0]
    if len(set(bands)) != 1 or dataset.colorinterp[band - 1] != ColorInterp.palette:
        return None
    if dataset.dtypes[band - 1] != "uint8":
        raise BackendError("bad_raster", f"band {band} of {dataset.name!r} is paletted with "
                           f"{dataset.dtypes[band - 1]} indices; only 8-bit colour tables can be read",
                           "expand it to RGB first: gdal_translate -expand rgb in.tif out.tif (or QGIS's "
                           "Raster > Conversion > PCT to RGB)")
    try:
        colormap = dataset.colormap(band)
    except ValueError:
        return None
    lookup = np.zeros((256, 4), np.uint8)
    for index, rgba in colormap.items():
        if 0 <= index < 256:
            lookup[index] = rgba
    return lookup


# A view whose longer side is shorter than this cannot show the model anything it could find.
MIN_VIEW_SIDE = 16
METRES_PER_DEGREE = 111_320.0  # along a meridian, and along the equator: close enough to suggest a value
# Smallest resolution taken for metres typed on a raster in degrees (1 cm); a value in degrees for imagery is far
# smaller (0.5 m ≈ 4.5e-6°), so a tiny raster read coarser in degrees is not mistaken for this.
METRE_LIKE = 0.01


def _refuse_metres_as_degrees(resolution: float, src_res: tuple[float, float], size: tuple[int, int],
                              crs: CRS) -> None:
    """Refuse a resolution that, on a raster in degrees, was almost certainly meant in metres.

    "0.5" on a raster in EPSG:4326 asks for pixels of half a degree (55 km): the view shrinks to a pixel or
    a few and the run silently finds nothing. Converting it would give the same number two meanings in one
    protocol (map units here, metres there) depending on the raster; so the request is refused with the value
    in degrees to use instead. Automatic resolution (the default) converts metres itself.

    Raises:
        BackendError: ``bad_request`` when a metre-like resolution (>= ``METRE_LIKE``) coarsens the raster to
            fewer than ``MIN_VIEW_SIDE`` pixels on the view's longer side.
    """
    if max(size) >= MIN_VIEW_SIDE or resolution <= max(src_res) or resolution < METRE_LIKE:
        return
    degrees = resolution / METRES_PER_DEGREE
    raise BackendError("bad_request", f"resolution {resolution:g} is in degrees for this raster ({crs.to_string()}),"
                       f" which makes the view {size[0]}×{size[1]} pixels",
                       f"give the resolution in degrees: {resolution:g} m is about {degrees:.2g}° "
                       f"(e.g. --resolution {degrees:.2g}), or leave the resolution automatic")


def _read(dataset: rasterio.DatasetReader, view: RasterView, window: Window,
          out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Read source ``window`` resampled to ``out_shape`` in the view's orientation (north-up).

    Returns:
        (3×h×w data: float32, or float64 when a band is stored as float64 so values beyond float32's range stay
        finite; h×w bool validity).
    """
    data, valid = _read_stored(dataset, view, window, out_shape)
    if view.flip_rows:
        data, valid = data[:, ::-1], valid[::-1]
    if view.flip_cols:
        data, valid = data[:, :, ::-1], valid[:, ::-1]
    return np.ascontiguousarray(data), np.ascontiguousarray(valid)


def _read_stored(dataset: rasterio.DatasetReader, view: RasterView, window: Window,
                 out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``_read`` in the source's stored orientation."""
    scale = max(window.width / out_shape[1], window.height / out_shape[0])
    resampling = Resampling.average if scale > 1.5 else Resampling.bilinear
    if view.palette is not None:  # indices cannot be averaged: pick them, then look their colours up
        resampling = Resampling.mode if scale > 1.5 else Resampling.nearest
    unique = sorted(set(view.bands))
    out_dtype = "float64" if "float64" in view.dtypes else "float32"
    try:
        data = dataset.read(unique, window=window, out_shape=(len(unique), *out_shape), resampling=resampling,
                            out_dtype="uint8" if view.palette is not None else out_dtype)
        masks = dataset.read_masks(unique, window=window, out_shape=(len(unique), *out_shape),
                                   resampling=Resampling.nearest)
    except RasterioError as err:
        raise BackendError("bad_raster", f"cannot read the pixels of {view.path!r}: {_root_cause(err)}",
                           "the file (or a file it refers to) is damaged or incomplete: copy or export it again; "
                           "`gdalinfo -checksum` shows whether a file reads whole") from err
    if view.palette is not None:
        rgba = view.palette[data[0]]  # h×w×4
        return (np.moveaxis(rgba[..., :3], -1, 0).astype(np.float32),
                (masks[0] > 0) & (rgba[..., 3] > 0))
    valid = np.all(masks > 0, axis=0) & np.all(np.isfinite(data), axis=0)
    if unique == list(view.bands):
        return data, valid
    return data[[unique.index(b) for b in view.bands]], valid


def _root_cause(err: BaseException) -> str:
    """The innermost message of a GDAL error chain (rasterio's own text is "see previous exception")."""
    while (inner := err.__cause__ or err.__context__) is not None:
        err = inner
    return str(err)


def read_tile(view: RasterView, row_off: int, col_off: int, height: int, width: int,
              dataset: rasterio.DatasetReader | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a tile of the view, reading only the source pixels under it.

    Args:
        view: the view.
        row_off, col_off: the tile's top-left corner in view pixels (may lie outside the view).
        height, width: the tile's size in view pixels; parts outside the view come back invalid (boundless).
        dataset: an open dataset of ``view.path`` to reuse (opened and closed here when None).

    Returns:
        (data 3×height×width float32 in source units (float64 for float64 sources; RGB for a paletted band),
        valid height×width bool: False for nodata or outside), north-up whatever the source's orientation.
    """
    r0, c0 = max(row_off, 0), max(col_off, 0)
    r1, c1 = min(row_off + height, view.shape[0]), min(col_off + width, view.shape[1])
    if r1 <= r0 or c1 <= c0:
        return np.zeros((3, height, width), np.float32), np.zeros((height, width), bool)
    sx, sy = view.scale
    stored_r0 = view.shape[0] - r1 if view.flip_rows else r0
    stored_c0 = view.shape[1] - c1 if view.flip_cols else c0
    window = Window(view.window[0] + stored_c0 * sx, view.window[1] + stored_r0 * sy, (c1 - c0) * sx,
                    (r1 - r0) * sy)
    if dataset is None:
        with open_raster(view.path) as opened:
            inner, inner_valid = _read(opened, view, window, (r1 - r0, c1 - c0))
    else:
        inner, inner_valid = _read(dataset, view, window, (r1 - r0, c1 - c0))
    if (r1 - r0, c1 - c0) == (height, width):
        return inner, inner_valid
    data = np.zeros((3, height, width), inner.dtype)
    valid = np.zeros((height, width), bool)
    data[:, r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = inner
    valid[r0 - row_off:r1 - row_off, c0 - col_off:c1 - col_off] = inner_valid
    return data, valid


def read_whole(view: RasterView, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Read the whole view decimated so its longer side is at most ``max_side`` (never upsampled).

    Returns:
        (data 3×h×w float32, valid h×w bool) with h, w ≤ ``max_side`` and the view's aspect ratio.
    """
    height, width = view.shape
    factor = min(1.0, max_side / max(height, width))
    out_shape = (max(1, round(height * factor)), max(1, round(width * factor)))
    with open_raster(view.path) as dataset:
        return _read(dataset, view, Window(*view.window), out_shape)
