"""The parts' polygons into one GeoPackage: objects cut by the borders of a mosaic's parts joined again.

Parts of one source are abutting windows on one pixel grid, so an object cut by a part border comes back as
pieces sharing an edge on it; their union is the object (as ``backend.output.vectorize`` joins objects cut by
strip and tile borders). Its score is the area-weighted mean of the pieces' scores and its area their sum.
Parts of different sources are never joined (separate files may cover the same ground). Polygons of sources in
another CRS are reprojected to the first part's CRS.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyogrio
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from backend.output.vectorize import Detection
from backend.output.writing import PhraseDetections, write_outputs


@dataclass(frozen=True)
class PartPolygons:
    """What one done part wrote.

    Attributes:
        source: the input the part belongs to.
        path: its GeoPackage.
        pixel_area: ground area of one view pixel in the part's map units² (for ``Detection.area_px``).
    """

    source: str
    path: str
    pixel_area: float


def _read(part: PartPolygons) -> tuple[CRS, list[tuple[str, shapely.Polygon, float, float]]]:
    """The part's CRS and its (query, polygon, score, area_m2) rows."""
    info = pyogrio.read_info(part.path)
    _, _, geometry, fields = pyogrio.raw.read(part.path, columns=["query", "score", "area_m2"])
    polygons = shapely.from_wkb(geometry) if len(geometry) else []
    rows = [(str(q), p, float(s), float(a)) for q, p, s, a in zip(fields[0], polygons, fields[1], fields[2],
                                                                   strict=True)]
    return CRS.from_user_input(info["crs"]), rows


def join_pieces(pieces: list[tuple[shapely.Polygon, float, float, float]]
                ) -> list[tuple[shapely.Polygon, float, float, float]]:
    """Union the pieces that share an edge (pieces of one phrase on abutting parts).

    Args:
        pieces: (polygon, score, area_m2, area_px) of each piece.

    Returns:
        (polygon, score, area_m2, area_px) per joined object: score the area-weighted mean, the areas the sums.
    """
    if len(pieces) < 2:
        return pieces
    merged = shapely.get_parts(shapely.union_all([p for p, _, _, _ in pieces]))
    tree = shapely.STRtree(merged)
    totals = np.zeros((len(merged), 3))
    for polygon, score, area, area_px in pieces:
        hit = tree.query(polygon.representative_point(), predicate="intersects")[0]
        totals[hit] += (score * area, area, area_px)
    return [(m, float(t / a) if a > 0 else 0.0, float(a), float(px))
            for m, (t, a, px) in zip(merged, totals, strict=True)]


def merge_parts(parts: Iterable[PartPolygons], phrases: tuple[str, ...], paths: dict[str, str], *, model: str,
                checkpoint: str) -> tuple[CRS | None, dict[str, int]]:
    """Write every done part's polygons into ``paths`` (GeoPackage and GeoJSON), joining pieces across borders.

    Args:
        parts: the done parts.
        phrases: the batch's phrases (the order of the merged features).
        paths: ``output_paths`` of the merged files (replaced if they exist: they belong to the batch).
        model, checkpoint: the ``model`` and ``checkpoint`` attributes.

    Returns:
        The merged files' CRS (None when no part is done; nothing is written then) and the polygon count per
        phrase.
    """
    crs: CRS | None = None
    grouped: dict[tuple[str, str], list[tuple[shapely.Polygon, float, float, float]]] = defaultdict(list)
    for part in parts:
        part_crs, rows = _read(part)
        crs = crs or part_crs
        for query, polygon, score, area in rows:
            area_px = float(polygon.area) / part.pixel_area
            if part_crs != crs:
                polygon = shape(transform_geom(part_crs, crs, mapping(polygon)))
            grouped[(query, part.source)].append((polygon, score, area, area_px))
    if crs is None:
        return None, {}
    layers = []
    for phrase in phrases:
        detections = []
        for (query, _source), pieces in grouped.items():
            if query != phrase:
                continue
            for polygon, score, area, area_px in join_pieces(pieces):
                detections.append(Detection(geometry=polygon, score=score, area_m2=area, area_px=area_px))
        layers.append(PhraseDetections(phrase, tuple(sorted(detections, key=lambda d: -d.score))))
    write_outputs(layers, crs, paths, model=model, checkpoint=checkpoint, overwrite=True)
    return crs, {layer.query: len(layer.detections) for layer in layers}
