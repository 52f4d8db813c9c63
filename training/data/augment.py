"""Flips that keep a referring phrase true: never mirror an image whose phrase names a side.

Horizontal flips are allowed only when the phrase has no left/right word, vertical flips only when it has no
top/bottom/up/down/above/below/north/south word; the phrase itself is never edited. Both are off by default,
as in the paper (which uses no augmentation at all).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_HORIZONTAL_WORDS = re.compile(r"\b(left|right|leftmost|rightmost|east|west|eastern|western)\b", re.IGNORECASE)
_VERTICAL_WORDS = re.compile(
    r"\b(top|bottom|up|upper|down|lower|above|below|north|south|northern|southern|topmost|bottommost)\b",
    re.IGNORECASE)


def may_flip_horizontally(sentence: str) -> bool:
    """True if mirroring left↔right leaves the phrase true."""
    return _HORIZONTAL_WORDS.search(sentence) is None


def may_flip_vertically(sentence: str) -> bool:
    """True if mirroring top↔bottom leaves the phrase true."""
    return _VERTICAL_WORDS.search(sentence) is None


def phrase_safe_flip(image: np.ndarray, mask: np.ndarray, sentences: str | Sequence[str],
                     rng: np.random.Generator, hflip_prob: float = 0.0, vflip_prob: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Randomly flip an image and its mask(s) where the phrase(s) allow.

    Args:
        image: H×W×3 image.
        mask: H×W mask, or H×W×K masks of K phrases on this image.
        sentences: the referring phrase, or the K phrases (a flip happens only if every one allows it).
        rng: random generator (one draw per flip direction, always made, so streams stay aligned).
        hflip_prob, vflip_prob: flip probabilities (0 disables).

    Returns:
        The (possibly) flipped image and mask, contiguous.
    """
    phrases = [sentences] if isinstance(sentences, str) else list(sentences)
    do_h = rng.random() < hflip_prob and all(map(may_flip_horizontally, phrases))
    do_v = rng.random() < vflip_prob and all(map(may_flip_vertically, phrases))
    if do_h:
        image, mask = image[:, ::-1], mask[:, ::-1]
    if do_v:
        image, mask = image[::-1], mask[::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(mask)
