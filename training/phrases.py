"""Unambiguous referring phrases for the objects of a synthetic scene.

Every phrase is checked against all objects of the scene before it is emitted: it must pick out exactly one
object, with a clear margin wherever it depends on geometry (positions, distances, sizes), so a model is never
trained on an ambiguous target. Three families, recorded as ``phrase_type``:

- ``attribute``: kind plus colour and/or size class ("the red building", "the large white tank"). A size word
  is used only when the scene also holds an object of the same kind in the other size class, so "large" can be
  read from the picture by comparison whatever the ground resolution.
- ``position``: where the object is in the image ("the building at the top left", "the tank closest to the
  right edge"), also with a colour ("the red building at the top left": the one of the red buildings in that
  quarter of the image).
- ``relation``: relative to other objects ("the small tank next to the large tank", "the second largest
  building", "the building nearest to the pond").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.scene import SceneObject

PHRASE_TYPES = ("attribute", "position", "relation")
# A distance or size ranking counts as unambiguous only if the runner-up is this much further / smaller.
DISTANCE_MARGIN = 1.5
SIZE_MARGIN = 1.15
# Centroids closer than this fraction of the image side to a third-line are not named by region.
REGION_MARGIN = 0.04
EDGE_MARGIN_PX = 12.0
_ORDINALS = {1: "", 2: "second ", 3: "third "}


@dataclass(frozen=True)
class Phrase:
    """A referring phrase and the index of the one object it names."""

    text: str
    target: int
    phrase_type: str


def _matching(objects: Sequence[SceneObject], pred: Callable[[SceneObject], bool]) -> list[int]:
    return [i for i, o in enumerate(objects) if pred(o)]


def _size_readable(objects: Sequence[SceneObject], o: SceneObject) -> bool:
    """Whether the scene shows ``o``'s size class by comparison: another object of its kind in the other class."""
    return any(x.kind == o.kind and x.size != o.size for x in objects)


def attribute_phrases(objects: Sequence[SceneObject]) -> list[Phrase]:
    """Phrases naming an object by kind, colour and size class, kept when exactly one object matches."""
    out: list[Phrase] = []
    for i, o in enumerate(objects):
        colour = "" if o.kind == "pond" else f"{o.colour} "
        variants = [(f"the {colour}{o.kind}", lambda x, o=o: x.kind == o.kind and x.colour == o.colour)]
        if _size_readable(objects, o):
            variants += [
                (f"the {o.size} {o.kind}", lambda x, o=o: x.kind == o.kind and x.size == o.size),
                (f"the {o.size} {colour}{o.kind}",
                 lambda x, o=o: x.kind == o.kind and x.size == o.size and x.colour == o.colour),
            ]
        seen: set[str] = set()
        for text, pred in variants:
            if text not in seen and _matching(objects, pred) == [i]:
                out.append(Phrase(text, i, "attribute"))
                seen.add(text)
    return out


def _region_word(centre: tuple[float, float], size: int) -> str | None:
    """"top left", "centre", "right", … for a centroid, or None if it lies near a third-line."""
    words = []
    for value, names in ((centre[1], ("top", "", "bottom")), (centre[0], ("left", "", "right"))):
        frac = value / size
        if min(abs(frac - 1 / 3), abs(frac - 2 / 3)) < REGION_MARGIN:
            return None
        words.append(names[min(int(frac * 3), 2)])
    text = " ".join(w for w in words if w)
    return text or "centre"


def _half_sides(centre: tuple[float, float], size: int) -> tuple[str | None, str | None]:
    """("top" / "bottom" / None, "left" / "right" / None) by image halves; None near the half-line."""
    sides: list[str | None] = []
    for value, names in ((centre[1], ("top", "bottom")), (centre[0], ("left", "right"))):
        frac = value / size
        sides.append(None if abs(frac - 0.5) < REGION_MARGIN else names[int(frac > 0.5)])
    return sides[0], sides[1]


def coloured_position_phrases(objects: Sequence[SceneObject], size: int) -> list[Phrase]:
    """"the red building at the top left": an object named by colour and kind plus the quarter (or half) of the
    image it lies in, kept when every other object of that colour and kind lies clearly on another side."""
    out: list[Phrase] = []
    for i, o in enumerate(objects):
        if o.kind == "pond":
            continue
        vertical, horizontal = _half_sides(o.centre, size)
        group = [j for j in _matching(objects, lambda x, o=o: x.kind == o.kind and x.colour == o.colour) if j != i]
        for use_v, use_h in ((True, True), (True, False), (False, True)):
            words = [w for w, use in ((vertical, use_v), (horizontal, use_h)) if use]
            if not words or None in words:
                continue
            others = [_half_sides(objects[j].centre, size) for j in group]
            clear = all((use_v and v is not None and v != vertical) or (use_h and h is not None and h != horizontal)
                        for v, h in others)
            if clear:
                out.append(Phrase(f"the {o.colour} {o.kind} at the {' '.join(words)}", i, "position"))
    return out


def position_phrases(objects: Sequence[SceneObject], size: int) -> list[Phrase]:
    """Phrases naming an object by its image region or by being clearly closest to an image edge."""
    out: list[Phrase] = coloured_position_phrases(objects, size)
    regions = [_region_word(o.centre, size) for o in objects]
    for i, o in enumerate(objects):
        same_kind = _matching(objects, lambda x, o=o: x.kind == o.kind)
        # Same-kind neighbours near a third-line (region None) could be read as either region: no phrase then.
        if all(regions[j] is not None for j in same_kind) and all(
                regions[j] != regions[i] for j in same_kind if j != i):
            out.append(Phrase(f"the {o.kind} at the {regions[i]}", i, "position"))
        if len(same_kind) < 2:
            continue
        for edge in ("left", "right", "top", "bottom"):
            dist = {j: _edge_distance(objects[j], edge, size) for j in same_kind}
            ranked = sorted(same_kind, key=dist.__getitem__)
            if ranked[0] == i and dist[ranked[1]] - dist[i] >= EDGE_MARGIN_PX:
                out.append(Phrase(f"the {o.kind} closest to the {edge} edge", i, "position"))
    return out


def _edge_distance(o: SceneObject, edge: str, size: int) -> float:
    x0, y0, x1, y1 = o.bbox
    return {"left": x0, "right": size - x1, "top": y0, "bottom": size - y1}[edge]


def _distance(a: SceneObject, b: SceneObject) -> float:
    (ax, ay), (bx, by) = a.centre, b.centre
    return float(np.hypot(ax - bx, ay - by))


def _unique_name(objects: Sequence[SceneObject], j: int) -> str | None:
    """The shortest attribute phrase that names object ``j`` alone ("the pond", "the large tank"), or None."""
    o = objects[j]
    colour = "" if o.kind == "pond" else f"{o.colour} "
    candidates = [(f"the {o.kind}", lambda x: x.kind == o.kind)]
    if _size_readable(objects, o):
        candidates.append((f"the {o.size} {o.kind}", lambda x: x.kind == o.kind and x.size == o.size))
    candidates.append((f"the {colour}{o.kind}", lambda x: x.kind == o.kind and x.colour == o.colour))
    for text, pred in candidates:
        if _matching(objects, pred) == [j]:
            return text
    return None


def relation_phrases(objects: Sequence[SceneObject]) -> list[Phrase]:
    """Phrases naming an object by its size rank among its kind or by being nearest to a uniquely named anchor."""
    out: list[Phrase] = []
    for kind in ("building", "tank", "pond"):
        members = sorted(_matching(objects, lambda x, k=kind: x.kind == k),
                         key=lambda j: -objects[j].area_px)
        if len(members) < 2:
            continue
        areas = [objects[j].area_px for j in members]
        for rank in (1, 2, 3):
            if rank > len(members):
                break
            if rank > 1 and areas[rank - 2] < SIZE_MARGIN * areas[rank - 1]:
                continue
            if rank < len(members) and areas[rank - 1] < SIZE_MARGIN * areas[rank]:
                continue
            out.append(Phrase(f"the {_ORDINALS[rank]}largest {kind}", members[rank - 1], "relation"))
        if len(members) >= 3 and areas[-2] >= SIZE_MARGIN * areas[-1]:
            out.append(Phrase(f"the smallest {kind}", members[-1], "relation"))

    for a_idx, anchor in enumerate(objects):
        anchor_name = _unique_name(objects, a_idx)
        if anchor_name is None:
            continue
        for kind in ("building", "tank", "pond"):
            for size in (None, "small", "large"):
                group = [j for j in _matching(objects, lambda x, k=kind, s=size: x.kind == k
                                              and (s is None or x.size == s)) if j != a_idx]
                if not group or (size is not None and not _size_readable(objects, objects[group[0]])):
                    continue
                ranked = sorted(group, key=lambda j: _distance(objects[j], anchor))
                d0 = _distance(objects[ranked[0]], anchor)
                if len(ranked) > 1 and _distance(objects[ranked[1]], anchor) < DISTANCE_MARGIN * d0:
                    continue
                noun, word = (kind, "nearest to") if size is None else (f"{size} {kind}", "next to")
                out.append(Phrase(f"the {noun} {word} {anchor_name}", ranked[0], "relation"))
    return out


def all_phrases(objects: Sequence[SceneObject], size: int) -> list[Phrase]:
    """Every unambiguous phrase of the three families for a scene of side ``size`` px."""
    return attribute_phrases(objects) + position_phrases(objects, size) + relation_phrases(objects)
