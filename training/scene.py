"""Aerial-like synthetic scenes: one renderer for the demo GeoTIFF and the synthetic referring set.

A scene is a top-down picture of a landscape (fields, a road, water, trees) with referable objects on it
(buildings of a few colours and sizes, round storage tanks, ponds). Every referable object carries its kind,
colour, size class and exact pixel mask, so phrases can be generated from ground truth
(``training/synthetic.py``) and the demo model trained on those phrases works on the bundled sample.

Pure numpy; deterministic for a given ``numpy.random.Generator`` state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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

# Side length in metres of each size class, drawn uniformly in the range.
BUILDING_SIZES_M: dict[str, tuple[float, float]] = {"small": (9.0, 14.0), "large": (24.0, 34.0)}
TANK_DIAMETERS_M: dict[str, tuple[float, float]] = {"small": (7.0, 10.0), "large": (16.0, 22.0)}
POND_SIZES_M: dict[str, tuple[float, float]] = {"small": (14.0, 20.0), "large": (28.0, 40.0)}


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

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the mask centroid in pixels."""
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    @property
    def area_px(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class Scene:
    """A rendered scene: ``image`` is H×W×3 uint8 RGB; ``objects`` the referable objects on it."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]
    gsd_m: float


def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [0, 1], size×size, made by bilinear upsampling of a coarse random grid."""
    coarse_n = size // cell + 2
    coarse = rng.random((coarse_n, coarse_n))
    coords = np.arange(size) / cell
    i0 = np.floor(coords).astype(int)
    frac = coords - i0
    rows = coarse[i0] * (1 - frac)[:, None] + coarse[i0 + 1] * frac[:, None]
    return rows[:, i0] * (1 - frac)[None, :] + rows[:, i0 + 1] * frac[None, :]


def _paint(image: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], texture: np.ndarray,
           amount: float) -> None:
    """Paint ``rgb`` into ``image`` where ``mask``, modulated by ``texture`` (±amount, relative)."""
    shade = 1.0 + amount * (texture[mask] - 0.5) * 2.0
    image[mask] = np.clip(np.asarray(rgb, np.float32)[None, :] * shade[:, None], 0, 255)


def _render_background(rng: np.random.Generator, size: int, image: np.ndarray) -> np.ndarray:
    """Fields, a road and a river strip; returns the H×W bool mask of ground that objects may not cover."""
    grass = np.array([96, 128, 64], np.float32)
    noise = _smooth_noise(rng, size, 24)
    image[:] = grass * (0.85 + 0.3 * noise)[..., None]
    yy, xx = np.mgrid[0:size, 0:size]
    blocked = np.zeros((size, size), bool)

    field_colours = [(150, 160, 70), (190, 170, 100), (120, 100, 70), (90, 140, 60)]
    for _ in range(rng.integers(2, 5)):
        w, h = rng.integers(size // 6, size // 3, 2)
        x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
        field_mask = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        rows = 0.5 + 0.5 * np.sin((xx if rng.random() < 0.5 else yy) * rng.uniform(0.6, 1.2))
        _paint(image, field_mask, field_colours[rng.integers(len(field_colours))], rows, 0.08)

    # A straight road across the scene, horizontal or vertical.
    width = int(rng.integers(6, 11))
    offset = int(rng.integers(size // 5, 4 * size // 5))
    road = (np.abs(yy - offset) < width / 2) if rng.random() < 0.5 else (np.abs(xx - offset) < width / 2)
    _paint(image, road, (150, 146, 140), noise, 0.05)
    blocked |= road

    # A river strip along one border, sometimes.
    if rng.random() < 0.6:
        depth = int(rng.integers(size // 14, size // 8))
        wobble = (np.sin(np.arange(size) / rng.uniform(20, 50)) * depth * 0.3).astype(int)
        river = (yy < depth + wobble[None, :]) if rng.random() < 0.5 else (xx > size - depth + wobble[:, None])
        _paint(image, river, (40, 70, 110), noise, 0.1)
        blocked |= river
    return blocked


def _render_trees(rng: np.random.Generator, size: int, image: np.ndarray, free: np.ndarray) -> None:
    """Dark-green tree crowns on free ground (not referable, but they make the scene look aerial)."""
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(rng.integers(15, 40)):
        cx, cy = rng.integers(0, size, 2)
        radius = rng.uniform(3, 7)
        crown = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2) & free
        image[crown] = (40 + rng.integers(0, 20), 80 + rng.integers(0, 30), 35)


def _place(rng: np.random.Generator, occupied: np.ndarray, w: int, h: int, margin: int) -> tuple[int, int] | None:
    """Top-left corner of a free w×h box (with ``margin`` px clearance), or None after 60 tries."""
    size = occupied.shape[0]
    for _ in range(60):
        x0 = int(rng.integers(margin, size - w - margin))
        y0 = int(rng.integers(margin, size - h - margin))
        if not occupied[y0 - margin:y0 + h + margin, x0 - margin:x0 + w + margin].any():
            return x0, y0
    return None


def render_scene(rng: np.random.Generator, size: int = 512, gsd_m: float = 0.5,
                 n_buildings: tuple[int, int] = (3, 7), n_tanks: tuple[int, int] = (1, 4),
                 n_ponds: tuple[int, int] = (0, 2)) -> Scene:
    """Render one aerial-like scene with referable objects.

    Args:
        rng: the random generator (the scene is a pure function of its state).
        size: the side of the square image in pixels.
        gsd_m: ground sampling distance in metres per pixel (object sizes are in metres).
        n_buildings, n_tanks, n_ponds: inclusive ranges of how many of each to try to place.

    Returns:
        The scene: an H×W×3 uint8 image and its objects, which never overlap each other or the road/river.
    """
    image = np.zeros((size, size, 3), np.float32)
    occupied = _render_background(rng, size, image)
    texture = _smooth_noise(rng, size, 6)
    yy, xx = np.mgrid[0:size, 0:size]
    objects: list[SceneObject] = []

    def add(kind: str, colour: str, size_class: str, extent_m: tuple[float, float], round_: bool,
            aspect: tuple[float, float], rgb: tuple[int, int, int]) -> None:
        side = rng.uniform(*extent_m) / gsd_m
        w = max(3, int(side * (rng.uniform(*aspect) if not round_ else 1.0)))
        h = max(3, int(side))
        spot = _place(rng, occupied, w + 4, h + 4, margin=max(3, int(4 / gsd_m)))
        if spot is None:
            return
        x0, y0 = spot[0] + 2, spot[1] + 2
        if round_:
            cx, cy, r = x0 + w / 2, y0 + h / 2, min(w, h) / 2
            mask = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r**2
        else:
            mask = (xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h)
        # A soft shadow to the south-east, painted first so the object covers its own part of it.
        shadow = np.roll(np.roll(mask, 2, axis=0), 2, axis=1) & ~mask
        image[shadow] *= 0.55
        _paint(image, mask, rgb, texture, 0.06)
        if kind == "tank" and round_:  # a darker rim makes tanks read as tanks
            rim = mask & ~((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= (r - 1.5) ** 2)
            image[rim] *= 0.8
        occupied[y0 - 2:y0 + h + 2, x0 - 2:x0 + w + 2] = True
        ys, xs = np.nonzero(mask)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(SceneObject(kind, colour, size_class, bbox, mask))

    for _ in range(rng.integers(n_ponds[0], n_ponds[1] + 1)):
        size_class = str(rng.choice(["small", "large"]))
        add("pond", "blue", size_class, POND_SIZES_M[size_class], True, (1.0, 1.0), POND_RGB)
    for _ in range(rng.integers(n_tanks[0], n_tanks[1] + 1)):
        size_class = str(rng.choice(["small", "large"]))
        colour = str(rng.choice(TANK_COLOURS))
        add("tank", colour, size_class, TANK_DIAMETERS_M[size_class], True, (1.0, 1.0), OBJECT_COLOURS[colour])
    for _ in range(rng.integers(n_buildings[0], n_buildings[1] + 1)):
        size_class = str(rng.choice(["small", "large"]))
        colour = str(rng.choice(BUILDING_COLOURS))
        add("building", colour, size_class, BUILDING_SIZES_M[size_class], False, (0.7, 1.5),
            OBJECT_COLOURS[colour])
    _render_trees(rng, size, image, ~occupied)
    return Scene(image=np.clip(image, 0, 255).astype(np.uint8), objects=tuple(objects), gsd_m=gsd_m)
