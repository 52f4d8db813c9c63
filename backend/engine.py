"""The engine: a raster view and referring phrases in, georeferenced polygon files out.

View mode (default) treats the view as one picture, as the model was trained: a coarse pass on the whole view
resampled to the model's input, then, when the view is larger than that, SAM refinement at the requested
resolution on the tiles under the coarse mask's box (by default with the phrase's own prompts on each tile, kept
where the coarse mask supports them); a referring phrase names one object, so only its best connected component
is kept (unless ``all_matches``). Find-all mode runs every phrase on every tile of the view and merges objects
cut by tile borders. Both stitch tile cores into canvases that spill to disk when large.

Everything cheap is checked before any model work: the job's fields and text, the output targets (writable,
not existing unless overwriting, enough free space), the raster and the view; the resolution is resolved first
("auto" reads the view at the checkpoint's training resolution, see ``backend.raster.resolution``).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from backend.errors import BackendError
from backend.files.stale import owned_prefix, sweep
from backend.output.preflight import check_output_targets, check_utf8
from backend.output.probability import ProbabilityMaps
from backend.output.vectorize import best_components, vectorize
from backend.output.writing import PhraseDetections, output_paths, write_outputs
from backend.passes import (
    REFINE_STRATEGIES,
    AnswerMemo,
    RunContext,
    ViewClicks,
    coarse_pass,
    find_all_pass,
    refine_boxes,
    refine_pass,
    view_clicks,
)
from backend.protocol import DEFAULT_REFINE, MIN_TILE_SIZE, RESOLUTION_AUTO, WARNING_STAGE, Click, PhraseSummary, Window
from backend.raster.normalize import stretch_for_view
from backend.raster.reading import MAX_VIEW_PIXELS, MIN_VIEW_SIDE, RasterView, make_view, read_tile
from backend.raster.resolution import (
    ResolutionChoice,
    choose_resolution,
    default_min_area_m2,
    resolution_warnings,
)
from backend.raster.tiling import CANVAS_FOLDER_PREFIX, IN_MEMORY_BYTES, ProbabilityCanvas

MODES = ("view", "find-all")
ProgressFn = Callable[[float, str, str], None]


@dataclass(frozen=True)
class SegmentJob:
    """One segmentation run.

    Attributes:
        raster: path of a GDAL-readable raster with a CRS.
        phrases: referring phrases, one output polygon set each.
        window: the part of the raster (extent in its CRS or pixel window); None for the whole raster.
        resolution: target ground size of a pixel in map units; None for the raster's own; "auto" (the
            default) for the checkpoint's training resolution (see ``backend.raster.resolution``).
        bands: 1-based bands read as R, G, B (one band is replicated); None for the declared RGB / first three.
        mode: "view" (the window is one picture) or "find-all" (every instance, tile by tile).
        refine: how view mode refines a view larger than the model input (``passes.REFINE_STRATEGIES``):
            "prompts", "phrase", "box" or "none" (see ``backend.protocol.Segment``).
        tile_size, overlap: tile side and overlap in view pixels; tile_size None = the model's input size, so
            tiles are seen at native resolution; overlap None = an eighth of the tile.
        threshold: probability above which a pixel is foreground.
        min_area_px: polygons smaller than this many view pixels are dropped.
        min_area_m2: polygons of less ground area (m², measured as the outputs' ``area_m2``) are dropped; None
            (the default) = the model's smallest drawable object (``resolution.default_min_area_m2``) for
            find-all and ``all_matches`` results, none for a view's single answer; 0 = no minimum.
        simplify_tolerance: polygon simplification in map units (0: none).
        output_dir: folder the outputs are written into.
        output_name: file stem of the outputs (``<output_dir>/<output_name>.geojson`` and ``.gpkg``).
        overwrite: replace existing outputs instead of refusing.
        model_name, checkpoint_name: stored in the ``model`` and ``checkpoint`` attributes.
        all_matches: view mode keeps every connected component of a phrase's mask, not only the best one (and
            those scoring close to it); find-all always keeps all.
        clicks: include/exclude clicks in the raster's CRS (``protocol.Click``), in order, each editing the answer
            the clicks before it left (view mode, one phrase; ``passes.coarse_pass``).
        box: (xmin, ymin, xmax, ymax) in the raster's CRS that the object lies in (view mode, one phrase).
        probability: also write each phrase's probability over the view as a GeoTIFF
            (``<output_name>_probability.tif``, or ``probability_path``).
        probability_path: where the probability GeoTIFF goes (implies ``probability``).
        cached_only: refuse with "not_cached" instead of encoding an image (a refinement on a segmented view).
    """

    raster: str
    phrases: tuple[str, ...]
    output_dir: str
    window: Window | None = None
    resolution: float | str | None = RESOLUTION_AUTO
    bands: tuple[int, ...] | None = None
    mode: str = "view"
    refine: str = DEFAULT_REFINE
    tile_size: int | None = None
    overlap: int | None = None
    threshold: float = 0.5
    min_area_px: int = 16
    min_area_m2: float | None = None
    simplify_tolerance: float = 0.0
    output_name: str = "segmentation"
    overwrite: bool = False
    model_name: str = ""
    checkpoint_name: str = ""
    all_matches: bool = False
    clicks: tuple[Click, ...] = ()
    box: tuple[float, float, float, float] | None = None
    probability: bool = False
    probability_path: str | None = None
    cached_only: bool = False


@dataclass(frozen=True)
class SegmentResult:
    """What a run produced.

    Attributes:
        outputs: format ("geojson", "gpkg") → written path.
        phrases: one summary per phrase: polygon count, best score, total area in m².
        crs: WKT of the outputs' CRS (the raster's).
        timings: seconds per stage: read, normalise, encode, predict, stitch, vectorize, write, total.
        tiles: how many tiles were encoded after the coarse pass (refinement or find-all).
        resolution_used: map units per view pixel (x) the view was read at.
        resolution_note: one line saying what that resolution is and why it was chosen.
        warnings: what the user should know about the answer, one sentence each: phrases longer than the text
            encoder reads (``ReferringPredictor.phrase_warnings``), a view read finer than the raster or far
            outside the model's training resolution (``resolution.resolution_warnings``).
    """

    outputs: dict[str, str]
    phrases: tuple[PhraseSummary, ...]
    crs: str
    timings: dict[str, float] = field(default_factory=dict)
    tiles: int = 0
    resolution_used: float | None = None
    resolution_note: str = ""
    warnings: tuple[str, ...] = ()


def _check_job(job: SegmentJob) -> tuple[str, ...]:
    """Validate the request's own fields; return the stripped phrases."""
    phrases = tuple(p.strip() for p in job.phrases)
    if not phrases or any(not p for p in phrases):
        raise BackendError("empty_query", "a referring phrase is empty",
                           'describe the object in words, e.g. "the large white storage tank"')
    for number, phrase in enumerate(phrases, 1):
        check_utf8(phrase, f"phrase {number}")
        if "\x00" in phrase:
            raise BackendError("bad_request", f"phrase {number} contains a NUL character (\\u0000)",
                               "remove it: the stored query would be cut there")
        if not any(_is_word_character(char) for char in phrase):
            shown = phrase.encode("unicode_escape").decode("ascii")
            raise BackendError("empty_query", f"phrase {number} has no letter or digit ('{shown}'): nothing "
                               "visible to look for",
                               'describe the object in words, e.g. "the large white storage tank"')
    check_utf8(job.raster, "the raster path")
    resolution = job.resolution
    if not (resolution is None or resolution == RESOLUTION_AUTO
            or (isinstance(resolution, (int, float)) and not isinstance(resolution, bool)
                and math.isfinite(resolution) and resolution > 0)):
        raise BackendError("bad_request", f"resolution {resolution!r} is not usable",
                           f"give a positive number of map units per pixel, {RESOLUTION_AUTO!r} or none (native)")
    if job.mode not in MODES:
        raise BackendError("bad_request", f"unknown mode {job.mode!r}", f"use one of {', '.join(MODES)}")
    if job.refine not in REFINE_STRATEGIES:
        raise BackendError("bad_request", f"unknown refinement {job.refine!r}",
                           f"use one of {', '.join(REFINE_STRATEGIES)}")
    minimum = job.min_area_m2
    if minimum is not None and not (isinstance(minimum, (int, float)) and not isinstance(minimum, bool)
                                    and math.isfinite(minimum) and minimum >= 0):
        raise BackendError("bad_request", f"minimum area {minimum!r} m² is not usable",
                           "give a number of square metres >= 0 (0 keeps every polygon), or none for the model's "
                           "default")
    if not 0.0 < job.threshold < 1.0:
        raise BackendError("bad_request", f"threshold {job.threshold} is outside (0, 1)", "use e.g. 0.5")
    if not (math.isfinite(job.simplify_tolerance) and job.simplify_tolerance >= 0):
        raise BackendError("bad_request", f"simplify tolerance {job.simplify_tolerance} is not a distance >= 0",
                           "give a tolerance in map units, e.g. 0.5, or 0 to keep the outlines as traced")
    if job.min_area_px < 0:
        raise BackendError("bad_request", f"minimum area {job.min_area_px} px is negative",
                           "give a number of pixels >= 0, e.g. 16")
    if (job.clicks or job.box is not None) and (job.mode != "view" or len(phrases) != 1):
        raise BackendError("bad_request", "clicks and a box refine one phrase's answer in view mode",
                           "give one phrase and leave find-all mode off")
    return phrases


# Letters that render as nothing (Hangul fillers): a phrase of them is as empty as one of zero-width spaces.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def _is_word_character(char: str) -> bool:
    """Whether ``char`` is a visible letter or digit (Unicode categories L* and N*), the least a phrase needs."""
    return unicodedata.category(char)[0] in "LN" and char not in INVISIBLE_LETTERS


def _tile_grid_size(job: SegmentJob, input_size: int) -> tuple[int, int]:
    """The run's (tile side, overlap) in view pixels, defaults resolved against the model's input size."""
    tile_size = job.tile_size or input_size
    overlap = tile_size // 8 if job.overlap is None else job.overlap
    if tile_size < MIN_TILE_SIZE or not 0 <= overlap < tile_size // 2:
        raise BackendError("bad_request", f"tile size {tile_size} with overlap {overlap} is not usable",
                           f"use a tile size of at least {MIN_TILE_SIZE} px and an overlap below half of it, "
                           f"e.g. {input_size} and {input_size // 8} (this model's input size and an eighth of it)")
    return tile_size, overlap


class Engine:
    """Runs ``SegmentJob``s with one predictor; the predictor's embedding cache persists across runs."""

    def __init__(self, predictor, *, max_view_pixels: int = MAX_VIEW_PIXELS,
                 canvas_bytes: int = IN_MEMORY_BYTES) -> None:
        """Args:
            predictor: a ``backend.predictor.ReferringPredictor`` (``set_image``, ``predict``,
                ``predict_with_box``, ``input_size``).
            max_view_pixels: views with more pixels are refused with "too_large".
            canvas_bytes: probability canvases larger than this are memory-mapped from temp files.
        """
        self.predictor = predictor
        self.max_view_pixels = max_view_pixels
        self.canvas_bytes = canvas_bytes
        self._answers = AnswerMemo()  # refined answers by view, phrase and clicks: undo and a new click are cheap
        sweep(tempfile.gettempdir(), owned_prefix(CANVAS_FOLDER_PREFIX))  # maps of runs that were killed

    def run(self, job: SegmentJob, progress: ProgressFn | None = None,
            should_cancel: Callable[[], bool] | None = None) -> SegmentResult:
        """Segment ``job.phrases`` on the job's view and write the polygon files.

        Args:
            job: the run.
            progress: called as ``progress(fraction 0..1, stage, message)`` between steps and tiles.
            should_cancel: polled between tiles; when it returns True the run raises ``cancelled`` and
                leaves no output file.

        Returns:
            Output paths, per-phrase summaries, the CRS, per-stage timings, the resolution used and the
            warnings (each also reported as ``progress(0.0, WARNING_STAGE, warning)`` before the model runs).
        """
        phrases = _check_job(job)
        grid = _tile_grid_size(job, int(self.predictor.input_size))
        paths = output_paths(job.output_dir, job.output_name)
        if job.probability or job.probability_path:
            paths["probability"] = job.probability_path or os.path.join(job.output_dir,
                                                                        f"{job.output_name}_probability.tif")
        check_output_targets(paths.values(), job.overwrite)
        view, choice, scale_warnings = self._view(job)
        clicks = view_clicks(view, job.clicks, job.box)
        self._check_scratch_space(view, len(phrases))
        warnings = (*self.predictor.phrase_warnings(phrases), *scale_warnings)
        report = progress or (lambda *_: None)
        for warning in warnings:  # told at once, before the model runs; the result lists them again
            report(0.0, WARNING_STAGE, warning)
        ctx = RunContext(view=view, stretch=None, predictor=self.predictor,
                         key_prefix=(os.path.abspath(view.path), os.stat(view.path).st_mtime_ns, view.window,
                                     view.resolution, view.bands),
                         report=report, should_cancel=should_cancel or (lambda: False),
                         cached_only=job.cached_only, clicks=clicks, answers=self._answers)
        with ctx.timed("total"):
            ctx.report(0.0, "normalise", "estimating the radiometric stretch")
            with ctx.timed("normalise"):
                ctx.stretch = stretch_for_view(view)
            with ExitStack() as stack:
                canvases, tiles = self._segment(ctx, job, phrases, grid, stack)
                ctx.check_cancel()
                ctx.report(0.9, "vectorize", "tracing polygons")
                minimum_m2 = self._min_area_m2(job)
                with ctx.timed("vectorize"):
                    layers = [PhraseDetections(p, tuple(self._answer(job, clicks, vectorize(
                        c, view.transform, view.crs, threshold=job.threshold, min_area_px=job.min_area_px,
                        min_area_m2=minimum_m2, simplify_tolerance=job.simplify_tolerance))))
                        for p, c in zip(phrases, canvases, strict=True)]
                ctx.check_cancel()
                ctx.report(0.97, "write", "writing outputs")
                maps = None
                if "probability" in paths:
                    maps = ProbabilityMaps(maps=canvases, names=phrases, transform=view.transform, crs=view.crs,
                                           valid_rows=lambda row, rows: read_tile(view, row, 0, rows,
                                                                                  view.shape[1])[1])
                with ctx.timed("write"):
                    write_outputs(layers, view.crs, paths, model=job.model_name, checkpoint=job.checkpoint_name,
                                  overwrite=job.overwrite, probability=maps)
        ctx.report(1.0, "done", f"wrote {paths['gpkg']}")
        summaries = tuple(PhraseSummary(query=layer.query, count=len(layer.detections),
                                        score=max((d.score for d in layer.detections), default=None),
                                        area_m2=float(sum(d.area_m2 for d in layer.detections)))
                          for layer in layers)
        return SegmentResult(outputs=paths, phrases=summaries, crs=view.crs.to_wkt(),
                             timings={k: round(v, 4) for k, v in ctx.timings.items()}, tiles=tiles,
                             resolution_used=view.resolution[0], resolution_note=choice.note, warnings=warnings)

    def _view(self, job: SegmentJob) -> tuple[RasterView, ResolutionChoice, list[str]]:
        """The job's view, at its resolution ("auto" resolved against the checkpoint's training range), and the
        warnings about that resolution."""
        window = job.window
        area = {"extent": window.extent if window else None, "pixels": window.pixels if window else None,
                "bands": job.bands}
        native = make_view(job.raster, **area, resolution=None, max_pixels=math.inf)
        (height, width), (res_x, res_y) = native.shape, native.resolution
        centre = native.transform @ (width / 2, height / 2)
        gsd_range_m = getattr(getattr(self.predictor, "meta", None), "gsd_range_m", None)
        choice = choose_resolution(job.resolution, crs=native.crs, native=(res_x, res_y),
                                   extent_size=(width * res_x, height * res_y), centre=centre, mode=job.mode,
                                   input_size=int(self.predictor.input_size), gsd_range_m=gsd_range_m)
        requested = isinstance(job.resolution, (int, float))  # typed by the user: too coarse is refused
        view = make_view(job.raster, **area, resolution=choice.resolution, max_pixels=self.max_view_pixels,
                         min_side=MIN_VIEW_SIDE if requested else 0)
        warnings = resolution_warnings(crs=native.crs, native=(res_x, res_y), used=view.resolution, centre=centre,
                                       gsd_range_m=gsd_range_m)
        return view, choice, warnings

    def _check_scratch_space(self, view: RasterView, count: int) -> None:
        """Refuse a run whose disk-backed probability maps (one per phrase) would not fit in the temp folder."""
        per_map = view.shape[0] * view.shape[1] * 4
        if per_map <= self.canvas_bytes:
            return
        folder = tempfile.gettempdir()
        need, free = per_map * count, shutil.disk_usage(folder).free
        if need > free:
            raise BackendError("disk_full", f"the run's probability maps need {need / 2**30:.1f} GiB in the temp "
                               f"folder {folder!r}, which has {free / 2**30:.1f} GiB free",
                               "free space there, point TMPDIR to a larger disk, or choose a coarser resolution or "
                               "a smaller extent")

    def _min_area_m2(self, job: SegmentJob) -> float:
        """The job's minimum polygon area in m²: its own, else the model's smallest drawable object for results
        that keep every match (a view's single answer keeps its best polygon whatever its size)."""
        if job.min_area_m2 is not None:
            return float(job.min_area_m2)
        if job.mode != "find-all" and not job.all_matches:
            return 0.0
        return default_min_area_m2(getattr(getattr(self.predictor, "meta", None), "gsd_range_m", None)) or 0.0

    @staticmethod
    def _answer(job: SegmentJob, clicks: ViewClicks | None, detections: list) -> list:
        """View mode answers a referring phrase with its best component (``all_matches``: every component), and
        every component an include click lies in."""
        if job.mode != "view" or job.all_matches:
            return detections
        best = best_components(detections)
        if clicks is None:
            return best
        picked = [d for d in detections if any(d.geometry.covers(point) for point in clicks.include_points())]
        return picked or best

    def _canvases(self, ctx: RunContext, count: int, stack: ExitStack) -> list[ProbabilityCanvas]:
        """One view-sized canvas per phrase, closed (temp files deleted) when ``stack`` exits."""
        return [stack.enter_context(ProbabilityCanvas(shape=ctx.view.shape, in_memory_bytes=self.canvas_bytes))
                for _ in range(count)]

    def _segment(self, ctx: RunContext, job: SegmentJob, phrases: tuple[str, ...], grid: tuple[int, int],
                 stack: ExitStack) -> tuple[list[np.ndarray], int]:
        """Fill one probability map per phrase over the view; returns (maps, tiles encoded after coarse)."""
        tile_size, overlap = grid
        if job.mode == "find-all":
            canvases = self._canvases(ctx, len(phrases), stack)
            tiles = find_all_pass(ctx, phrases, canvases, tile_size, overlap, (0.05, 0.9))
            return [c.array for c in canvases], len(tiles)
        ctx.report(0.05, "coarse", "locating the phrases on the whole view")
        # Zero-shot mode has no prompter: its refinement uses SAM's box prompt.
        refine = "box" if job.refine == "prompts" and self.predictor.mode == "zero-shot" else job.refine
        coarse, prompts = coarse_pass(ctx, phrases, with_prompts=refine == "prompts", rank=not job.all_matches)
        if coarse.shape[1:] == ctx.view.shape:  # the view fits the model input: the coarse pass is final
            return list(coarse), 0
        boxes = [refine_boxes(c, job.threshold, ctx.view.shape) for c in coarse]
        canvases = self._canvases(ctx, len(phrases), stack)
        tiles = refine_pass(ctx, phrases, coarse, boxes, canvases, tile_size, overlap, job.threshold, (0.25, 0.9),
                            strategy=refine, prompts=prompts)
        return [c.array for c in canvases], len(tiles)
