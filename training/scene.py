"""Aerial-like synthetic scenes: one renderer for the demo GeoTIFF and the synthetic referring set.

A scene is a top-down picture of a landscape (ground, fields, roads, maybe a river, trees) with referable
objects on it: buildings of five colours and two size classes (rotated or not, rectangular or L-shaped, flat,
gabled, hipped or corrugated roofs), round storage tanks and ponds. Every referable object carries its kind,
colour, size class and exact pixel mask, so phrases are generated from ground truth (``training/phrases.py``).

Everything a different renderer could do differently is drawn per scene: ground type and texture, field
patterns, road count, angles and curves, object sizes, counts, rotations and roof styles, sun direction and
shadow length, illumination, colour cast, haze, blur and noise (``scene_ground``, ``scene_objects``,
``scene_photometry``). Sizes are in metres, so the ground sampling distance sets how large objects look.

Pure numpy; deterministic for a given ``numpy.random.Generator`` state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from training.scene_ground import render_ground, render_trees
from training.scene_objects import Footprint, blob, disc, paint_building, paint_pond, paint_tank, rectangle, shadow_mask
from training.scene_photometry import apply_photometry

# RGB colours of referable objects, keyed by the colour word used in phrases.
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (178, 52, 44),
    "white": (236, 236, 230),
    "blue": (56, 92, 170),
    "grey": (128, 128, 132),
    "orange": (214, 128, 48),
}
POND_RGB = (46, 84, 120)  # ponds are water: "blue" in phrases, painted darker than blue roofs
BUILDING_COLOURS = ("red", "white", "blue", "grey", "orange")
TANK_COLOURS = ("white", "grey")

# Side length (buildings: long side; tanks and ponds: diameter) in metres of each size class.
BUILDING_SIZES_M: dict[str, tuple[float, float]] = {"small": (8.0, 15.0), "large": (23.0, 36.0)}
TANK_DIAMETERS_M: dict[str, tuple[float, float]] = {"small": (6.0, 10.0), "large": (15.0, 24.0)}
POND_SIZES_M: dict[str, tuple[float, float]] = {"small": (12.0, 20.0), "large": (28.0, 44.0)}
# Heights in metres (they set shadow lengths).
HEIGHTS_M = {"building": (3.0, 12.0), "tank": (4.0, 12.0), "pond": (0.0, 0.0)}


@dataclass(frozen=True)
class SceneObject:
    """One referable object.

    Attributes:
        kind: "building", "tank" or "pond".
        colour: colour word ("red", "white", …; "blue" for ponds).
        size: "small" or "large".
        bbox: (x0, y0, x1, y1) in pixels, half-open.
        mask: H×W bool, the object's exact footprint.
    """

    kind: str
    colour: str
    size: str
    bbox: tuple[int, int, int, int]
    mask: np.ndarray = field(repr=False, compare=False)

    @cached_property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the mask centroid in pixels (computed once: phrase generation asks for it often)."""
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    @cached_property
    def area_px(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Scene:
    """A rendered scene: ``image`` is H×W×3 uint8 RGB; ``objects`` the referable objects on it."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]
    gsd_m: float


@dataclass(frozen=True)
class _Placed:
    kind: str
    colour: str
    size: str
    shape: Footprint
    angle: float
    height_m: float


def _footprint(rng: np.random.Generator, kind: str, size_class: str, gsd_m: float, cx: float,
               cy: float) -> tuple[Footprint, float]:
    """A footprint of ``kind`` and size class centred on (cx, cy) px, and its rotation angle."""
    if kind == "building":
        length = rng.uniform(*BUILDING_SIZES_M[size_class]) / gsd_m
        width = length * rng.uniform(0.5, 1.0)
        angle = rng.choice([0.0, np.pi / 2]) if rng.random() < 0.45 else rng.uniform(0, np.pi)
        notch = rng.uniform(0.3, 0.5) if rng.random() < 0.2 else 0.0
        return rectangle(cx, cy, max(length, 3.0), max(width, 3.0), angle, notch), angle
    if kind == "tank":
        return disc(cx, cy, max(rng.uniform(*TANK_DIAMETERS_M[size_class]) / gsd_m / 2, 1.5)), 0.0
    radius = max(rng.uniform(*POND_SIZES_M[size_class]) / gsd_m / 2, 2.0)
    aspect = 1.0 if rng.random() < 0.4 else rng.uniform(1.0, 1.6)
    angle = rng.uniform(0, np.pi)
    return blob(rng, cx, cy, radius, aspect, angle), angle


def _try_place(rng: np.random.Generator, kind: str, size_class: str, gsd_m: float, occupied: np.ndarray,
               margin: int) -> tuple[Footprint, float] | None:
    """A footprint that lies inside the scene, clear of ``occupied`` by ``margin`` px, or None after 40 tries."""
    size = occupied.shape[0]
    for _ in range(40):
        cx, cy = rng.uniform(0, size, 2)
        shape, angle = _footprint(rng, kind, size_class, gsd_m, cx, cy)
        ys, xs = np.nonzero(shape.mask)
        if len(ys) == 0:
            continue
        x0, y0 = shape.x0 + xs.min(), shape.y0 + ys.min()
        x1, y1 = shape.x0 + xs.max() + 1, shape.y0 + ys.max() + 1
        if x0 < margin or y0 < margin or x1 > size - margin or y1 > size - margin:
            continue
        if not occupied[y0 - margin:y1 + margin, x0 - margin:x1 + margin].any():
            occupied[y0 - margin // 2:y1 + margin // 2, x0 - margin // 2:x1 + margin // 2] = True
            return shape, angle
    return None


def _window_of(image: np.ndarray, x0: int, y0: int, h: int, w: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The part of ``image`` under a window (clipped to the image) and the slices of the window it covers."""
    size_y, size_x = image.shape[:2]
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + h, size_y), min(x0 + w, size_x)
    return image[ya:yb, xa:xb], (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))


def render_scene(rng: np.random.Generator, size: int = 512, gsd_m: float = 0.5,
                 n_buildings: tuple[int, int] = (2, 9), n_tanks: tuple[int, int] = (0, 5),
                 n_ponds: tuple[int, int] = (0, 2)) -> Scene:
    """Render one aerial-like scene with referable objects.

    Args:
        rng: the random generator (the scene is a pure function of its state).
        size: the side of the square image in pixels.
        gsd_m: ground sampling distance in metres per pixel (object sizes are in metres).
        n_buildings, n_tanks, n_ponds: inclusive ranges of how many of each to try to place.

    Returns:
        The scene: an H×W×3 uint8 image and its objects, which never overlap each other or the roads/water.
    """
    image = np.zeros((size, size, 3), np.float32)
    occupied = render_ground(rng, size, gsd_m, image)
    azimuth = rng.uniform(0, 2 * np.pi)
    sun = (float(np.cos(azimuth)), float(np.sin(azimuth)))  # shadows fall towards +sun
    shadow_per_m = rng.uniform(0.2, 0.9)  # shadow length per metre of height
    margin = max(2, int(round(rng.uniform(2.0, 6.0) / gsd_m)))

    wanted = ([("pond", "blue")] * int(rng.integers(n_ponds[0], n_ponds[1] + 1))
              + [("tank", str(rng.choice(TANK_COLOURS))) for _ in range(rng.integers(n_tanks[0], n_tanks[1] + 1))]
              + [("building", str(rng.choice(BUILDING_COLOURS)))
                 for _ in range(rng.integers(n_buildings[0], n_buildings[1] + 1))])
    placed: list[_Placed] = []
    for kind, colour in wanted:
        size_class = str(rng.choice(["small", "large"]))
        spot = _try_place(rng, kind, size_class, gsd_m, occupied, margin)
        if spot is not None:
            placed.append(_Placed(kind, colour, size_class, spot[0], spot[1], rng.uniform(*HEIGHTS_M[kind])))

    darkness = rng.uniform(0.45, 0.7)
    for obj in placed:
        if obj.height_m <= 0:
            continue
        length = obj.height_m * shadow_per_m / gsd_m
        x0, y0, shadow = shadow_mask(obj.shape, (sun[0] * length, sun[1] * length))
        window, (sy, sx) = _window_of(image, x0, y0, *shadow.shape)
        window[shadow[sy, sx]] *= darkness
    objects: list[SceneObject] = []
    for obj in placed:
        window, (sy, sx) = _window_of(image, obj.shape.x0, obj.shape.y0, *obj.shape.mask.shape)
        local = Footprint(0, 0, obj.shape.mask[sy, sx], obj.shape.u[sy, sx], obj.shape.v[sy, sx], obj.shape.half)
        if obj.kind == "building":
            paint_building(rng, window, local, OBJECT_COLOURS[obj.colour], sun, obj.angle)
        elif obj.kind == "tank":
            paint_tank(rng, window, local, OBJECT_COLOURS[obj.colour], sun)
        else:
            paint_pond(rng, window, local, POND_RGB)
        mask = np.zeros((size, size), bool)
        target, _ = _window_of(mask, obj.shape.x0, obj.shape.y0, *obj.shape.mask.shape)
        target[...] = local.mask
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(obj.kind, obj.colour, obj.size, bbox, mask))
    render_trees(rng, size, gsd_m, image, ~occupied, sun)
    return Scene(image=apply_photometry(rng, image), objects=tuple(objects), gsd_m=gsd_m)
