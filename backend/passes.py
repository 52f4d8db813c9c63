"""The engine's model passes over a view: coarse (whole view), refine (SAM tiles on the coarse box), find-all.

Each pass fills one probability canvas per phrase from the predictor's outputs. Tiles are normalised with the
run's single stretch, encoded once (the predictor caches embeddings by key) and stitched by their cores.
Progress is reported and cancellation is checked between tiles.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import shapely

from backend import protocol
from backend.errors import BackendError
from backend.raster.normalize import Stretch
from backend.raster.reading import RasterView, open_raster, read_tile, read_whole
from backend.raster.tiling import ProbabilityCanvas, Tile, tile_grid

if TYPE_CHECKING:
    import torch

    from backend.predictor import PhrasePrompts

# The refinement box is the coarse mask's bounding box grown by this fraction of its longer side (≥ 16 px).
REFINE_MARGIN_FRACTION = 0.1
REFINE_MARGIN_MIN_PX = 16


@dataclass
class RunContext:
    """What every pass needs: the view, its stretch, the predictor, cache-key prefix, callbacks, timings."""

    view: RasterView
    stretch: Stretch | None
    predictor: object
    key_prefix: tuple
    report: Callable[[float, str, str], None]
    should_cancel: Callable[[], bool]
    timings: dict[str, float] = field(default_factory=dict)
    cached_only: bool = False
    clicks: ViewClicks | None = None
    answers: AnswerMemo | None = None

    @contextmanager
    def timed(self, stage: str):
        """Add the block's wall time to ``timings[stage]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def check_cancel(self) -> None:
        """Raise ``cancelled`` when the caller asked to stop."""
        if self.should_cancel():
            raise BackendError("cancelled", "segmentation cancelled", "run it again when you need the result")

    def encode(self, rgb: np.ndarray, tile: object) -> None:
        """``set_image`` with the cache key of this view and ``tile`` (reuses cached embeddings).

        Raises:
            BackendError: "not_cached" with ``cached_only`` when the embeddings are not cached.
        """
        key = (*self.key_prefix, tile)
        if self.cached_only and not self.predictor.has_image(key):
            raise BackendError("not_cached", "this view's image features are no longer cached, and a refinement "
                               "never encodes the image again", "run the phrase again, then click")
        with self.timed("encode"):
            self.predictor.set_image(rgb, image_key=key)


def coarse_pass(ctx: RunContext, phrases: Sequence[str], with_prompts: bool = False, rank: bool = True
                ) -> tuple[np.ndarray, PhrasePrompts | None]:
    """Run every phrase on the whole view resampled to the model's input size.

    Args:
        ctx: the run.
        phrases: the N phrases.
        with_prompts: also return the prompter's prompts (for the "prompts" refinement).
        rank: let the model's candidate ranker (if it has one) choose the named object (``predictor.predict``).

    Returns:
        (probs N×h×w float32 with invalid pixels zeroed, prompts at h×w or None); h, w ≤ input size, view
        aspect.
    """
    with ctx.timed("read"):
        data, valid = read_whole(ctx.view, int(ctx.predictor.input_size))
    with ctx.timed("normalise"):
        rgb = ctx.stretch.apply(data, valid)
    ctx.encode(rgb, ("coarse", rgb.shape[:2]))
    with ctx.timed("predict"):
        if ctx.clicks is None:
            prediction = ctx.predictor.predict(list(phrases), with_prompts=with_prompts, rank=rank)
        else:
            prediction = _clicked(ctx, phrases[0], rgb.shape[:2], with_prompts, rank)
    probs = np.array(prediction.probs, np.float32)
    probs[:, ~valid] = 0.0
    return probs, prediction.prompts


@dataclass(frozen=True)
class ViewClicks:
    """A user's clicks and box in view pixels (``view_clicks``).

    Attributes:
        points: K×2 float (col, row) = (x, y) view pixel coordinates of the clicks, in order.
        labels: K int, 1 = include, 0 = exclude.
        box: (x0, y0, x1, y1) view pixel coordinates, or None.
        map_points: the clicks' (x, y) in the raster's CRS.
    """

    points: np.ndarray
    labels: np.ndarray
    box: tuple[float, float, float, float] | None
    map_points: tuple[tuple[float, float], ...]

    def include_points(self) -> list[shapely.Point]:
        """The include clicks as shapely points in the raster's CRS."""
        return [shapely.Point(p) for p, label in zip(self.map_points, self.labels, strict=True) if label == 1]


def view_clicks(view: RasterView, clicks: Sequence[protocol.Click],
                box: tuple[float, float, float, float] | None) -> ViewClicks | None:
    """Clicks and a box in the raster's CRS → view pixels; None when there are neither.

    Raises:
        BackendError: ``bad_request`` for a click or box corner outside the area read.
    """
    if not clicks and box is None:
        return None
    inverse = ~view.transform
    height, width = view.shape

    def to_view(x: float, y: float, what: str) -> tuple[float, float]:
        col, row = inverse @ (x, y)
        if not (0 <= col <= width and 0 <= row <= height):
            left, top = view.transform * (0, 0)
            right, bottom = view.transform * (width, height)
            raise BackendError("bad_request", f"the {what} at {x:g}, {y:g} is outside the area read "
                               f"({min(left, right):g}, {min(top, bottom):g} – {max(left, right):g}, "
                               f"{max(top, bottom):g} in the raster's CRS)",
                               "click inside the area (coordinates in the raster's CRS, x then y)")
        return col, row

    points = np.array([to_view(c.x, c.y, "click") for c in clicks], np.float32).reshape(-1, 2)
    view_box = None
    if box is not None:
        (c0, r0), (c1, r1) = to_view(box[0], box[1], "box corner"), to_view(box[2], box[3], "box corner")
        view_box = (min(c0, c1), min(r0, r1), max(c0, c1), max(r0, r1))
    return ViewClicks(points=points, labels=np.array([int(c.include) for c in clicks], np.int64), box=view_box,
                      map_points=tuple((c.x, c.y) for c in clicks))


class AnswerMemo:
    """The low-resolution answers of the click lists refined so far (LRU), so that a refinement with one more
    click decodes once, and one with a click fewer (undo) decodes only its last step."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, key: tuple) -> torch.Tensor | None:
        if key in self._items:
            self._items.move_to_end(key)
        return self._items.get(key)

    def put(self, key: tuple, logits: torch.Tensor) -> None:
        self._items[key] = logits
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def _clicked(ctx: RunContext, phrase: str, image_hw: tuple[int, int], with_prompts: bool, rank: bool):
    """The phrase's answer on the current (coarse) image after the run's clicks, each click decoded with the
    answer before it as SAM's mask prompt (``ReferringPredictor.predict``); a box applies at every step.

    Returns:
        The last step's ``Prediction``.
    """
    clicks, predictor, memo = ctx.clicks, ctx.predictor, ctx.answers or AnswerMemo()
    height, width = ctx.view.shape
    scale = np.array([image_hw[1] / width, image_hw[0] / height], np.float32)
    points, labels = clicks.points * scale, clicks.labels
    box = None if clicks.box is None else tuple(float(v) for v in np.asarray(clicks.box) * np.tile(scale, 2))
    base = (*ctx.key_prefix, image_hw, phrase, rank, box)
    previous = memo.get((*base, 0))
    if previous is None:
        previous = predictor.predict(phrase, rank=rank).next_mask_input
        memo.put((*base, 0), previous)
    steps = range(1, len(points) + 1) if len(points) else [0]
    prediction = None
    for k in steps:
        key = (*base, tuple(map(tuple, points[:k].tolist())), tuple(labels[:k].tolist()))
        last = k == steps[-1]
        cached = None if last else memo.get(key)
        if cached is None:
            prediction = predictor.predict(phrase, with_prompts=with_prompts and last, rank=rank,
                                           points=points[:k] if k else None, point_labels=labels[:k] if k else None,
                                           box=box, mask_input=previous)
            cached = prediction.next_mask_input
            memo.put(key, cached)
        previous = cached
    return prediction


Box = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open, in view pixels


def refine_boxes(coarse: np.ndarray, threshold: float, view_shape: tuple[int, int]) -> list[Box]:
    """The view-pixel boxes to refine for one phrase: one per connected part of the coarse mask, plus a margin.

    One box per part (not one around all of them) keeps scattered detections on a big view from refining every
    tile between them.

    Args:
        coarse: h×w coarse probabilities over the whole view.
        threshold: foreground threshold.
        view_shape: (H, W) of the view.

    Returns:
        (row0, row1, col0, col1) boxes, half-open and clipped to the view; empty when the coarse mask is empty.
    """
    from rasterio.features import shapes

    mask = (coarse > threshold).astype(np.uint8)
    if not mask.any():
        return []
    sy, sx = view_shape[0] / coarse.shape[0], view_shape[1] / coarse.shape[1]
    boxes = []
    for geometry, _ in shapes(mask, mask=mask.astype(bool), connectivity=8):
        ring = np.asarray(geometry["coordinates"][0])  # exterior, in coarse pixel corners (x = col, y = row)
        r0, r1 = math.floor(ring[:, 1].min() * sy), math.ceil(ring[:, 1].max() * sy)
        c0, c1 = math.floor(ring[:, 0].min() * sx), math.ceil(ring[:, 0].max() * sx)
        margin = max(REFINE_MARGIN_MIN_PX, math.ceil(REFINE_MARGIN_FRACTION * max(r1 - r0, c1 - c0)))
        boxes.append((max(r0 - margin, 0), min(r1 + margin, view_shape[0]),
                      max(c0 - margin, 0), min(c1 + margin, view_shape[1])))
    return boxes


def upsample_region(coarse: np.ndarray, view_shape: tuple[int, int], tile: Tile) -> np.ndarray:
    """Bilinearly sample the coarse map (over the whole view) at the pixel centres of ``tile``.

    Returns:
        tile.height×tile.width float32.
    """
    sy, sx = coarse.shape[0] / view_shape[0], coarse.shape[1] / view_shape[1]
    ys = np.clip((np.arange(tile.row_off, tile.row_off + tile.height) + 0.5) * sy - 0.5, 0, coarse.shape[0] - 1)
    xs = np.clip((np.arange(tile.col_off, tile.col_off + tile.width) + 0.5) * sx - 0.5, 0, coarse.shape[1] - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, coarse.shape[0] - 1), np.minimum(x0 + 1, coarse.shape[1] - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x1] * fx
    bottom = coarse[y1][:, x0] * (1 - fx) + coarse[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _read_rgb(ctx: RunContext, dataset, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    """Read and normalise one tile: (H×W×3 uint8, H×W bool valid)."""
    with ctx.timed("read"):
        data, valid = read_tile(ctx.view, tile.row_off, tile.col_off, tile.height, tile.width, dataset=dataset)
    with ctx.timed("normalise"):
        return ctx.stretch.apply(data, valid), valid


def _tile_key(tile: Tile) -> tuple[int, int, int, int]:
    return tile.row_off, tile.col_off, tile.height, tile.width


# Fraction of the threshold the upsampled coarse probability must reach for a refined pixel to be kept.
REFINE_SUPPORT = 0.5
# How view mode refines at view resolution: "prompts" decodes each tile with the prompts the prompter made on the
# whole view (its sparse tokens, and its dense prompt resampled onto the tile); "phrase" runs the text encoder and
# prompter again on each tile; "box" prompts SAM with the coarse box and mask (no text); "none" keeps the coarse
# mask, bilinearly upsampled (no tile is read or encoded).
REFINE_STRATEGIES = protocol.REFINE_STRATEGIES


def refine_pass(ctx: RunContext, phrases: Sequence[str], coarse: np.ndarray,
                boxes: Sequence[Sequence[Box]], canvases: Sequence[ProbabilityCanvas],
                tile_size: int, overlap: int, threshold: float, span: tuple[float, float],
                strategy: str = "prompts", prompts: PhrasePrompts | None = None) -> list[Tile]:
    """Refine each phrase at view resolution on the grid tiles its box touches.

    The refined probability is the mean of the tile's (native resolution) and the coarse pass's (bilinearly
    upsampled): the coarse pass grounded the phrase in the whole view, the tile adds detail. A tile sees only
    part of the view, so a phrase about the view ("the tank closest to the top edge") can select another object
    there; the result is therefore kept only where the phrase's coarse probability reaches ``REFINE_SUPPORT`` of
    the threshold, so refinement never swaps the phrase's object for another one. (Demo checkpoint,
    ``benchmarks/refine_eval.py``: the mean scored 7.9 gIoU, the tile's probability alone 6.4.)

    Args:
        ctx: the run.
        phrases: the N phrases (used by the "phrase" strategy).
        coarse: N×h×w coarse probabilities (the mask prior, resampled per tile).
        boxes: per phrase, its refinement boxes (see ``refine_boxes``; none to skip the phrase).
        canvases: per phrase, the view-sized canvas the tile cores go to.
        tile_size, overlap: the grid.
        threshold: the foreground threshold of the run (the support gate is a fraction of it).
        span: (start, end) progress fractions of this pass.
        strategy: one of ``REFINE_STRATEGIES``.
        prompts: the prompter's prompts for the N phrases on the coarse view (needed by "prompts").

    Returns:
        The tiles that were encoded (each once, whatever the number of phrases; none for "none").
    """
    if strategy not in REFINE_STRATEGIES:
        raise ValueError(f"strategy must be one of {REFINE_STRATEGIES}, got {strategy!r}")
    if strategy == "prompts" and prompts is None:
        raise ValueError('the "prompts" strategy needs the coarse pass\'s prompts')
    grid = tile_grid(ctx.view.shape, tile_size, overlap)
    work = [(t, [i for i, phrase_boxes in enumerate(boxes) if any(t.intersects(b) for b in phrase_boxes)])
            for t in grid]
    work = [(t, users) for t, users in work if users]
    if strategy == "none":
        with ctx.timed("stitch"):
            for tile, users in work:
                for i in users:
                    canvases[i].write_core(tile, upsample_region(coarse[i], ctx.view.shape, tile))
        return []
    with open_raster(ctx.view.path) as dataset:
        for done, (tile, users) in enumerate(work):
            ctx.check_cancel()
            ctx.report(span[0] + (span[1] - span[0]) * done / len(work), "refine",
                       f"refining tile {done + 1}/{len(work)}")
            rgb, valid = _read_rgb(ctx, dataset, tile)
            ctx.encode(rgb, _tile_key(tile))
            priors = {i: upsample_region(coarse[i], ctx.view.shape, tile) for i in users}
            with ctx.timed("predict"):
                if strategy == "prompts":
                    dense = np.stack([upsample_region(prompts.dense[i], ctx.view.shape, tile) for i in users])
                    refined = np.array(ctx.predictor.predict_with_prompts(prompts.sparse[users], dense).probs,
                                       np.float32)
                elif strategy == "phrase":
                    refined = np.array(ctx.predictor.predict([phrases[i] for i in users], rank=False).probs,
                                       np.float32)
                else:
                    refined = np.stack([_box_refine(ctx, boxes[i], tile, priors[i]) for i in users])
            with ctx.timed("stitch"):
                for probs, i in zip(refined, users, strict=True):
                    fused = 0.5 * (probs + priors[i])
                    fused[~valid | (priors[i] < REFINE_SUPPORT * threshold)] = 0.0
                    canvases[i].write_core(tile, fused)
    return [t for t, _ in work]


def _box_refine(ctx: RunContext, view_boxes: Sequence[Box], tile: Tile, prior: np.ndarray) -> np.ndarray:
    """SAM's box + mask prompt on the current tile: the phrase's boxes on it, joined and clipped, and the prior.

    Returns:
        tile.height×tile.width float32 probabilities.
    """
    touching = [b for b in view_boxes if tile.intersects(b)]
    r0, r1 = min(b[0] for b in touching), max(b[1] for b in touching)
    c0, c1 = min(b[2] for b in touching), max(b[3] for b in touching)
    box = (max(c0 - tile.col_off, 0), max(r0 - tile.row_off, 0),
           min(c1 - tile.col_off, tile.width), min(r1 - tile.row_off, tile.height))
    return np.array(ctx.predictor.predict_with_box(np.asarray(box, np.float32), mask_prior=prior).probs[0],
                    np.float32)


def find_all_pass(ctx: RunContext, phrases: Sequence[str], canvases: Sequence[ProbabilityCanvas], tile_size: int,
                  overlap: int, span: tuple[float, float]) -> list[Tile]:
    """Run every phrase on every tile of the view; stitch cores into one canvas per phrase.

    Returns:
        The tiles that held valid pixels (fully nodata tiles are skipped).
    """
    grid = tile_grid(ctx.view.shape, tile_size, overlap)
    used = []
    with open_raster(ctx.view.path) as dataset:
        for done, tile in enumerate(grid):
            ctx.check_cancel()
            ctx.report(span[0] + (span[1] - span[0]) * done / len(grid), "tiles", f"tile {done + 1}/{len(grid)}")
            rgb, valid = _read_rgb(ctx, dataset, tile)
            if not valid.any():
                continue
            used.append(tile)
            ctx.encode(rgb, _tile_key(tile))
            with ctx.timed("predict"):
                probs = np.array(ctx.predictor.predict(list(phrases), rank=False).probs, np.float32)
            with ctx.timed("stitch"):
                probs[:, ~valid] = 0.0
                for canvas, phrase_probs in zip(canvases, probs, strict=True):
                    canvas.write_core(tile, phrase_probs)
    return used
