"""Referable objects of a synthetic scene: footprints (rotated rectangles, L shapes, discs, blobs) and roofs.

A footprint is computed on a local pixel window, so a scene with many objects stays cheap. Painters add the
object's look (flat, gabled, hipped or corrugated roofs; tank rims and domes; pond shading) on top of its
colour, lit from the scene's sun direction, and never leave the footprint, so the mask is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.scene_ground import jitter_rgb, paint, smooth_noise

ROOF_STYLES = ("flat", "gabled", "hipped", "corrugated")


@dataclass(frozen=True)
class Footprint:
    """An object's shape on a local window: ``mask`` h×w bool at window offset (``x0``, ``y0``).

    ``u``, ``v`` are h×w coordinates in pixels along and across the object's main axis, centred on it
    (for roofs); ``half`` is (half length, half width) along those axes.
    """

    x0: int
    y0: int
    mask: np.ndarray
    u: np.ndarray
    v: np.ndarray
    half: tuple[float, float]


def _window(cx: float, cy: float, reach: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    x0, y0 = int(np.floor(cx - reach)), int(np.floor(cy - reach))
    side = int(np.ceil(2 * reach)) + 2
    yy, xx = np.ogrid[y0:y0 + side, x0:x0 + side]
    dx, dy = np.broadcast_arrays((xx + 0.5 - cx).astype(np.float32), (yy + 0.5 - cy).astype(np.float32))
    return x0, y0, dx, dy


def rectangle(cx: float, cy: float, length: float, width: float, angle: float,
              notch: float = 0.0) -> Footprint:
    """A rectangle ``length``×``width`` px rotated by ``angle``; ``notch`` > 0 cuts that fraction of each side
    out of one corner (an L-shaped building)."""
    x0, y0, dx, dy = _window(cx, cy, 0.5 * np.hypot(length, width) + 1)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    mask = (np.abs(u) < length / 2) & (np.abs(v) < width / 2)
    if notch > 0:
        mask &= ~((u > length * (0.5 - notch)) & (v > width * (0.5 - notch)))
    return Footprint(x0, y0, mask, u, v, (length / 2, width / 2))


def disc(cx: float, cy: float, radius: float) -> Footprint:
    """A disc of ``radius`` px."""
    x0, y0, dx, dy = _window(cx, cy, radius + 1)
    return Footprint(x0, y0, dx**2 + dy**2 <= radius**2, dx, dy, (radius, radius))


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float, aspect: float, angle: float) -> Footprint:
    """An irregular pond outline: an ellipse of mean ``radius`` px and ``aspect`` whose radius wobbles with
    a few low harmonics."""
    x0, y0, dx, dy = _window(cx, cy, radius * aspect * 1.25 + 1)
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    theta = np.arctan2(v * aspect, u)
    wobble = sum(rng.uniform(0, 0.08) * np.cos(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    r = np.hypot(u / np.sqrt(aspect), v * np.sqrt(aspect))
    return Footprint(x0, y0, r <= radius * (1 + wobble), u, v, (radius * np.sqrt(aspect), radius / np.sqrt(aspect)))


def paint_building(rng: np.random.Generator, window: np.ndarray, shape: Footprint, rgb: tuple[int, int, int],
                   sun: tuple[float, float], angle: float) -> None:
    """Paint a roof of a random style in ``rgb`` (jittered) into ``window`` (the footprint's pixels)."""
    colour = jitter_rgb(rng, rgb, 0.1)
    style = ROOF_STYLES[int(rng.integers(len(ROOF_STYLES)))]
    grain = 1.0 + rng.uniform(0.03, 0.1) * (smooth_noise(rng, shape.mask.shape, rng.uniform(1.5, 4)) - 0.5)
    # How much each roof axis faces the sun: +1 lit, -1 in shade.
    sun_u = -(sun[0] * np.cos(angle) + sun[1] * np.sin(angle))
    sun_v = -(-sun[0] * np.sin(angle) + sun[1] * np.cos(angle))
    if style == "gabled":  # ridge along the long axis: two slopes, one facing the sun
        shade = 1.0 + 0.12 * np.sign(shape.v) * np.sign(sun_v or 1.0)
    elif style == "hipped":  # four facets: whichever axis dominates relative to the footprint's half sizes
        along = np.abs(shape.u) - (shape.half[0] - shape.half[1])
        facet_u = along > np.abs(shape.v)
        shade = np.where(facet_u, 1.0 + 0.12 * np.sign(shape.u) * np.sign(sun_u or 1.0),
                         1.0 + 0.12 * np.sign(shape.v) * np.sign(sun_v or 1.0))
    elif style == "corrugated":
        period = rng.uniform(1.2, 3.0)
        shade = 1.0 + 0.08 * np.sin(shape.u / period * 2 * np.pi)
    else:
        shade = np.ones(shape.mask.shape, np.float32)
    shade = shade * grain
    if style in ("gabled",) and rng.random() < 0.7:  # a lighter ridge line
        shade = np.where(np.abs(shape.v) < 0.8, shade * 1.15, shade)
    if style == "flat" and rng.random() < 0.6:  # a darker parapet
        edge = (np.abs(shape.u) > shape.half[0] - 1.2) | (np.abs(shape.v) > shape.half[1] - 1.2)
        shade = np.where(edge, shade * 0.85, shade)
    paint(window, shape.mask, colour, shade.astype(np.float32))


def paint_tank(rng: np.random.Generator, window: np.ndarray, shape: Footprint, rgb: tuple[int, int, int],
               sun: tuple[float, float]) -> None:
    """A round tank: a darker rim, a lit dome or flat roof with a ring, in ``rgb`` (jittered)."""
    colour = jitter_rgb(rng, rgb, 0.08)
    radius = shape.half[0]
    r = np.hypot(shape.u, shape.v)
    shade = np.where(r > radius - max(1.0, 0.08 * radius), rng.uniform(0.7, 0.85), 1.0)
    if rng.random() < 0.6:  # dome lit from the sun
        shade = shade * (1.0 + 0.15 * (-shape.u * sun[0] - shape.v * sun[1]) / max(radius, 1.0))
    else:  # flat floating roof with an inner ring
        ring = np.abs(r - rng.uniform(0.4, 0.7) * radius) < 0.7
        shade = np.where(ring, shade * 0.85, shade)
    paint(window, shape.mask, colour, shade.astype(np.float32))


def paint_pond(rng: np.random.Generator, window: np.ndarray, shape: Footprint, rgb: tuple[int, int, int]) -> None:
    """A pond: water in ``rgb`` (jittered), darker towards the middle."""
    colour = jitter_rgb(rng, rgb, 0.15)
    r = np.hypot(shape.u / max(shape.half[0], 1.0), shape.v / max(shape.half[1], 1.0))
    shade = 1.0 + rng.uniform(0.0, 0.2) * (np.clip(r, 0, 1) - 0.5)
    paint(window, shape.mask, colour, shade.astype(np.float32))


def shadow_mask(shape: Footprint, offset: tuple[float, float]) -> tuple[int, int, np.ndarray]:
    """The shadow the footprint casts ``offset`` px away: the footprint swept from its place to the offset, so a
    tall object's shadow is connected to it. Returns (x0, y0, mask) on a window grown to hold it."""
    ox, oy = round(offset[0]), round(offset[1])
    steps = max(abs(ox), abs(oy), 1)
    height, width = shape.mask.shape
    left, top = min(ox, 0), min(oy, 0)
    grown = np.zeros((height + abs(oy), width + abs(ox)), bool)
    for k in range(1, steps + 1):
        dx, dy = round(ox * k / steps) - left, round(oy * k / steps) - top
        grown[dy:dy + height, dx:dx + width] |= shape.mask
    return shape.x0 + left, shape.y0 + top, grown
