"""One query end to end on a worker thread: pixels to a file, model loaded, segment; shared by task and Processing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qgis.core import QgsRasterBlockFeedback

from .client import BackendClient, WorkerError
from .i18n import tr
from .raster_source import RasterPlan, materialize
from .requests import SegmentRequest

# Share of the progress bar for each step before the worker's own progress.
READ_SHARE, LOAD_SHARE = 0.05, 0.10


@dataclass(frozen=True)
class RefineSource:
    """What a ``refine`` request on a segmented view repeats: the ``segment`` fields sent (without
    ``output_dir``), and the view read, (xmin, ymin, xmax, ymax) in the raster's CRS (``crs_wkt``)."""

    fields: dict[str, Any]
    view: tuple[float, float, float, float]
    crs_wkt: str


@dataclass(frozen=True)
class QueryResult:
    """The worker's replies for one query: ``loaded`` (a ``Loaded``) and ``result`` (a ``Result``), and
    ``source``: how to refine its answer with clicks (one phrase in view mode only, else None)."""

    loaded: Any
    result: Any
    source: RefineSource | None = None

    @property
    def count(self) -> int:
        """Number of polygons over all phrases."""
        return sum(summary.count for summary in self.result.phrases)


def run_query(*, client: BackendClient, request: SegmentRequest, plan: RasterPlan, work_dir: Path,
              on_progress: Callable[[float, str], None], is_cancelled: Callable[[], bool],
              feedback: QgsRasterBlockFeedback | None = None) -> QueryResult:
    """Run ``request`` through the worker. Blocks the calling thread (never call it on the GUI thread).

    Args:
        client: the worker client.
        request: what to segment and with which model.
        plan: the pixels to use (from ``raster_source.plan_raster`` on the main thread).
        work_dir: an empty folder this query owns: the temp GeoTIFF and the worker's outputs go there.
        on_progress: called with (fraction 0..1, status text).
        is_cancelled: polled; True cancels the query.
        feedback: cancels the provider read of non-file layers.

    Returns:
        The ``Loaded`` and ``Result`` replies; ``result.outputs.geojson`` lies under ``work_dir``.

    Raises:
        WorkerError: the worker failed, crashed or the query was cancelled (code "cancelled").
        RasterInputError: the layer's pixels could not be read.
    """
    on_progress(0.0, tr("Reading the raster…"))
    raster = materialize(plan, work_dir, feedback)
    if is_cancelled():
        raise WorkerError("cancelled", tr("Cancelled."))
    model = {"checkpoint": request.checkpoint, "config": request.config, "device": request.device,
             "mode": request.load_mode, "clip_weights": request.clip_weights, "sam_weights": request.sam_weights,
             "precision": request.precision}
    on_progress(READ_SHARE, tr("Segmenting…") if client.holds(**model) else tr("Loading the model…"))
    loaded = client.load(**model, is_cancelled=is_cancelled)
    if is_cancelled():
        raise WorkerError("cancelled", tr("Cancelled."))
    output_dir = work_dir / "out"
    output_dir.mkdir(exist_ok=True)
    window = None if raster.window is None else client.protocol.Window(extent=tuple(raster.window))

    def forward(fraction: float, stage: str, message: str) -> None:
        if stage == client.protocol.WARNING_STAGE:  # the result lists it again: shown once, after the answer
            return
        start = READ_SHARE + LOAD_SHARE
        text = message or stage
        if str(work_dir) in text:  # "wrote /tmp/…": the worker's temp files are not the user's output
            text = tr("Publishing the result…")
        on_progress(start + (1.0 - start) * fraction, text)

    fields = {"raster": raster.raster, "phrases": request.phrases, "window": window,
              "resolution": raster.resolution, "bands": raster.bands, "mode": request.search,
              "refine": request.refine, "tile_size": request.tile_size, "overlap": request.overlap,
              "threshold": request.threshold, "all_matches": request.all_matches,
              "min_area_m2": request.min_area_m2}
    result = client.segment(output_dir=str(output_dir), probability=request.probability, on_progress=forward,
                            is_cancelled=is_cancelled, **fields)
    refinable = request.search == "view" and len(request.phrases) == 1
    source = RefineSource(fields=fields, view=plan.extent, crs_wkt=plan.crs_wkt) if refinable else None
    return QueryResult(loaded=loaded, result=result, source=source)
