"""The ground of a synthetic aerial scene: soil or grass, fields, roads, a river and trees.

Everything here is scenery: nothing is referable, but it decides what the model must learn to ignore. Each
scene draws its own ground type, textures, field layout, road count and angles and tree density, so that a
model trained on these scenes does not learn one renderer's look. Sizes are in metres and converted with the
scene's ground sampling distance.
"""

from __future__ import annotations

import numpy as np

# Base colours of the ground types (RGB), jittered per scene.
GROUND_TYPES: dict[str, tuple[int, int, int]] = {
    "grass": (92, 126, 62),
    "dry grass": (146, 140, 88),
    "soil": (136, 112, 82),
    "concrete": (140, 138, 132),
    "sand": (198, 182, 148),
    "forest floor": (70, 92, 52),
}
FIELD_COLOURS = ((150, 160, 70), (190, 170, 100), (120, 100, 70), (90, 140, 60), (170, 150, 90), (110, 130, 50))
ROAD_COLOURS = ((150, 146, 140), (96, 96, 100), (120, 118, 116), (160, 140, 110))  # last: a dirt road
WATER_RGB = (40, 70, 110)
MAX_TREES = 300


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Low-frequency noise in [0, 1] of ``shape``, bilinear upsampling of a random grid with ``cell`` px cells."""
    height, width = shape
    cell = max(cell, 1.0)
    coarse = rng.random((int(height / cell) + 2, int(width / cell) + 2))
    ys, xs = np.arange(height) / cell, np.arange(width) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def jitter_rgb(rng: np.random.Generator, rgb: tuple[int, int, int], amount: float) -> np.ndarray:
    """``rgb`` with a random brightness change and a smaller per-channel change, both up to ``amount``."""
    gain = 1.0 + rng.uniform(-amount, amount)
    channel = 1.0 + rng.uniform(-amount / 2, amount / 2, 3)
    return np.clip(np.asarray(rgb, np.float32) * gain * channel, 0, 255)


def paint(image: np.ndarray, mask: np.ndarray, rgb: np.ndarray, shade: np.ndarray | float = 1.0) -> None:
    """Paint ``rgb`` × ``shade`` (an H×W array or a scalar) into ``image`` where ``mask``."""
    factor = shade[mask] if isinstance(shade, np.ndarray) else np.full(int(mask.sum()), shade, np.float32)
    image[mask] = np.clip(np.asarray(rgb, np.float32)[None, :] * factor[:, None], 0, 255)


def _band(rng: np.random.Generator, size: int, width_px: float, curvy: bool,
          axis_aligned: bool) -> tuple[np.ndarray, np.ndarray]:
    """A straight or gently curved band across the scene: (H×W bool mask, H×W signed distance to its axis)."""
    yy, xx = np.ogrid[0:size, 0:size]
    angle = rng.choice([0.0, np.pi / 2]) if axis_aligned else rng.uniform(0, np.pi)
    nx, ny = -np.sin(angle), np.cos(angle)
    cx, cy = rng.uniform(0.15, 0.85, 2) * size
    along = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    across = (xx - cx) * nx + (yy - cy) * ny
    if curvy:
        across = across + rng.uniform(0.03, 0.12) * size * np.sin(along / rng.uniform(0.25, 0.6) / size * np.pi)
    return np.abs(across) < width_px / 2, across


def render_ground(rng: np.random.Generator, size: int, gsd_m: float, image: np.ndarray) -> np.ndarray:
    """Paint ground, fields, roads and maybe a river into ``image`` (H×W×3 float32, 0–255).

    Returns:
        H×W bool mask of ground no object may cover (roads, water).
    """
    ground = GROUND_TYPES[str(rng.choice(list(GROUND_TYPES)))]
    base = jitter_rgb(rng, ground, 0.12)
    texture = (0.7 * smooth_noise(rng, (size, size), rng.uniform(12, 48) / max(gsd_m, 0.1) * 0.5)
               + 0.3 * smooth_noise(rng, (size, size), rng.uniform(2, 6)))
    image[:] = base * (1.0 + rng.uniform(0.1, 0.35) * (texture - 0.5))[..., None]
    blocked = np.zeros((size, size), bool)

    _render_fields(rng, size, gsd_m, image)
    n_roads = int(rng.choice([0, 1, 1, 1, 2, 2, 3]))
    for _ in range(n_roads):
        width = rng.uniform(5.0, 12.0) / gsd_m
        road, across = _band(rng, size, width, curvy=rng.random() < 0.25, axis_aligned=rng.random() < 0.4)
        colour = jitter_rgb(rng, ROAD_COLOURS[int(rng.integers(len(ROAD_COLOURS)))], 0.1)
        paint(image, road, colour, 1.0 + 0.08 * (texture - 0.5))
        if width * gsd_m > 7.0 and rng.random() < 0.5:  # dashed centre line
            along = np.add.outer(np.arange(size), np.arange(size)) % max(int(6 / gsd_m), 4)
            line = road & (np.abs(across) < max(0.6, 0.15 / gsd_m)) & (along < max(int(3 / gsd_m), 2))
            paint(image, line, np.array([225.0, 225.0, 215.0]))
        blocked |= road
    if rng.random() < 0.4:
        river, _ = _band(rng, size, rng.uniform(12.0, 35.0) / gsd_m, curvy=True, axis_aligned=rng.random() < 0.5)
        paint(image, river, jitter_rgb(rng, WATER_RGB, 0.15), 1.0 + 0.1 * (texture - 0.5))
        blocked |= river
    return blocked


def _render_fields(rng: np.random.Generator, size: int, gsd_m: float, image: np.ndarray) -> None:
    """0–6 rotated rectangular fields with crop rows (stripes), speckle or a plain colour."""
    yy, xx = np.ogrid[0:size, 0:size]
    for _ in range(int(rng.integers(0, 7))):
        w, h = rng.uniform(0.15, 0.5, 2) * size
        cx, cy = rng.uniform(0, size, 2)
        angle = 0.0 if rng.random() < 0.5 else rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        field = (np.abs(u) < w / 2) & (np.abs(v) < h / 2)
        colour = jitter_rgb(rng, FIELD_COLOURS[int(rng.integers(len(FIELD_COLOURS)))], 0.12)
        pattern = rng.choice(["rows", "rows", "speckle", "plain"])
        if pattern == "rows":
            period = rng.uniform(1.5, 5.0) / gsd_m
            shade = 1.0 + rng.uniform(0.05, 0.18) * np.sin((u if rng.random() < 0.5 else v) / period * 2 * np.pi)
        elif pattern == "speckle":
            shade = 1.0 + 0.2 * (rng.random((size, size)).astype(np.float32) - 0.5)
        else:
            shade = 1.0
        paint(image, field, colour, shade)


def render_trees(rng: np.random.Generator, size: int, gsd_m: float, image: np.ndarray, free: np.ndarray,
                 sun: tuple[float, float]) -> None:
    """Tree crowns (scattered and in clumps) on ``free`` ground, each with a shadow away from the sun."""
    density = rng.choice([0.0, 0.3, 1.0, 2.0, 4.0])  # crowns per 1000 m²
    count = min(int(density * (size * gsd_m) ** 2 / 1000.0), MAX_TREES)
    if count == 0:
        return
    centres = rng.uniform(0, size, (count, 2))
    clumps = rng.uniform(0, size, (max(1, count // 12), 2))
    clumped = rng.random(count) < 0.5
    centres[clumped] = clumps[rng.integers(len(clumps), size=int(clumped.sum()))] + rng.normal(
        0, 8 / gsd_m, (int(clumped.sum()), 2))
    dark = jitter_rgb(rng, (44, 82, 38), 0.15)
    for cx, cy in centres:
        radius = rng.uniform(1.5, 4.5) / gsd_m
        x0, x1 = int(max(cx - radius - 3, 0)), int(min(cx + radius + 3 + abs(sun[0]) * radius, size))
        y0, y1 = int(max(cy - radius - 3, 0)), int(min(cy + radius + 3 + abs(sun[1]) * radius, size))
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        crown = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2) & free[y0:y1, x0:x1]
        shadow = (((xx - cx - sun[0] * radius) ** 2 + (yy - cy - sun[1] * radius) ** 2 < radius**2)
                  & free[y0:y1, x0:x1] & ~crown)
        window = image[y0:y1, x0:x1]
        window[shadow] *= 0.6
        light = 1.0 + 0.25 * (-(xx - cx) * sun[0] - (yy - cy) * sun[1]) / max(radius, 1.0)
        paint(window, crown, dark, light)
