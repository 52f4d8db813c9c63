"""The engine's model passes over a view: coarse (whole view), refine (SAM tiles on the coarse box), find-all.

Each pass fills one probability canvas per phrase from the predictor's outputs. Tiles are normalised with the
run's single stretch, encoded once (the predictor caches embeddings by key) and stitched by their cores.
Progress is reported and cancellation is checked between tiles.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from backend import protocol
from backend.errors import BackendError
from backend.raster.normalize import Stretch
from backend.raster.reading import RasterView, open_raster, read_tile, read_whole
from backend.raster.tiling import ProbabilityCanvas, Tile, tile_grid

if TYPE_CHECKING:
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
        """``set_image`` with the cache key of this view and ``tile`` (reuses cached embeddings)."""
        with self.timed("encode"):
            self.predictor.set_image(rgb, image_key=(*self.key_prefix, tile))


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
        prediction = ctx.predictor.predict(list(phrases), with_prompts=with_prompts, rank=rank)
    probs = np.array(prediction.probs, np.float32)
    probs[:, ~valid] = 0.0
    return probs, prediction.prompts


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
