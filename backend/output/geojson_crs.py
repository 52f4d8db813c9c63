"""The CRS of a GeoJSON output, kept for CRSs without an EPSG code (local engineering grids, custom projections).

GeoJSON (RFC 7946) has no CRS: coordinates are WGS 84. GDAL's GeoJSON driver writes the legacy (2008) ``crs``
member, but only as an authority URN (``urn:ogc:def:crs:EPSG::32633``); a CRS without one (a WKT ``LOCAL_CS`` /
``ENGCRS``, a custom Transverse Mercator) is written without any ``crs`` member and so reads back as WGS 84, a
silent mislabel. GDAL (hence QGIS) reads a ``crs`` member ``{"type": "name", "properties": {"name": <WKT>}}``, so
that is written for such CRSs, then the file is read back to prove it; a GeoJSON whose CRS still reads back as
something else is refused, never left mislabelled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyogrio
from rasterio.crs import CRS

from backend.errors import BackendError

_HEAD_BYTES = 64 << 10  # GDAL writes "type", "name" and "crs" before "features": all within the first bytes


def _has_crs_member(path: str) -> bool:
    """Whether GDAL wrote a ``crs`` member (it does, as an authority URN, for CRSs with an EPSG code)."""
    with open(path, "rb") as stream:
        head = stream.read(_HEAD_BYTES)
    return b'"crs"' in head.split(b'"features"', 1)[0]


def _read_back(path: str) -> CRS | None:
    text = pyogrio.read_info(path)["crs"]
    return CRS.from_user_input(text) if text else None


def keep_geojson_crs(path: str, crs: CRS, final: str) -> None:
    """Make the GeoJSON at ``path`` (just written by GDAL, polygons in ``crs``) read back in ``crs``.

    Args:
        path: the scratch GeoJSON file, rewritten in place when a ``crs`` member is added.
        crs: the polygons' CRS.
        final: the output's final path, named in errors.

    Raises:
        BackendError("bad_request"): the CRS cannot be carried by GeoJSON as GDAL reads it.
    """
    if _has_crs_member(path) or crs == CRS.from_epsg(4326):
        return  # labelled by GDAL itself, or GeoJSON's own WGS 84
    member = json.dumps({"type": "name", "properties": {"name": crs.to_wkt()}})
    text = Path(path).read_text(encoding="utf-8")
    start = text.index("{") + 1
    scratch = f"{path}.crs"
    try:
        Path(scratch).write_text(f'{text[:start]}\n"crs": {member},{text[start:]}', encoding="utf-8")
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.remove(scratch)
    if _read_back(path) != crs:
        raise BackendError("bad_request", f"cannot write {final!r}: GeoJSON cannot carry the raster's CRS "
                                          f"({crs.to_string()[:80]}) so that it reads back the same",
                           "use the GeoPackage output, which keeps the CRS, or reproject the raster to a CRS "
                           "with an EPSG code")
