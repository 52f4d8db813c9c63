"""Camera and atmosphere of a synthetic scene: illumination, colour cast, haze, blur and sensor noise.

Applied to the finished picture, so that brightness, contrast, colour balance and sharpness differ from scene
to scene while the colour words stay true (a red roof stays the reddest thing of its kind in the picture).
"""

from __future__ import annotations

import numpy as np


def _gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an H×W×C float image (edges replicated)."""
    radius = max(1, int(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    padded = np.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    image = sum(t * padded[i:i + image.shape[0]] for i, t in enumerate(taps))
    padded = np.pad(image, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(t * padded[:, i:i + image.shape[1]] for i, t in enumerate(taps))


def apply_photometry(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Random illumination, colour cast, haze gradient, blur and noise.

    Args:
        rng: the scene's random generator.
        image: H×W×3 float32 in 0–255.

    Returns:
        H×W×3 uint8.
    """
    size_y, size_x = image.shape[:2]
    gain = np.float32(rng.uniform(0.75, 1.2))
    cast = (1.0 + rng.uniform(-0.06, 0.06, 3)).astype(np.float32)
    mean = image.mean(axis=(0, 1), keepdims=True, dtype=np.float32)
    image = (mean + (image - mean) * np.float32(rng.uniform(0.8, 1.2))) * gain * cast
    if rng.random() < 0.4:  # haze increasing across the scene
        direction = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size_y, 0:size_x].astype(np.float32) / max(size_x, size_y)
        ramp = np.cos(direction) * xx + np.sin(direction) * yy
        ramp = ((ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6) * rng.uniform(0.05, 0.25)).astype(np.float32)
        image = image * (1 - ramp[..., None]) + 200.0 * ramp[..., None]
    image = 255.0 * (np.clip(image, 0, 255) / 255.0) ** np.float32(rng.uniform(0.8, 1.25))
    if rng.random() < 0.6:
        image = _gaussian_blur(image, rng.uniform(0.4, 1.2))
    if rng.random() < 0.7:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(1.0, 6.0))
    return np.clip(image, 0, 255).astype(np.uint8)
