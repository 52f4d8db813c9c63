"""The parts of a referring phrase a ranker looks up: the anchor of a relational phrase ("the tank nearest to
**the large pond**") and the subject of any phrase that says more than what its object is ("**the tank** closest
to the right edge", "the second largest **building**").

A relational phrase names its object by another one, the anchor. The candidate ranker can only compare its
candidates with the anchor if it knows where the anchor is; the predictor finds it by segmenting the anchor's own
phrase, which this module cuts out of the whole phrase. It recognises English spatial relations ("next to",
"nearest to", "near", "beside", "north of", "left of", "above", ...). A relation to a part of the image ("closest
to the top edge", "near the left border") has no object as anchor and gives none.
"""

from __future__ import annotations

import re

# Longer forms first, so that "to the left of" wins over "left of" and "closest to" over "close to".
RELATIONS = (
    "to the north of", "to the south of", "to the east of", "to the west of",
    "to the left of", "to the right of",
    "nearest to", "closest to", "next to", "close to", "adjacent to", "north of", "south of", "east of",
    "west of", "left of", "right of", "in front of", "on top of",
    "nearest", "closest", "beside", "near", "above", "below", "under", "behind", "by", "along", "around",
    "between",
)

# A phrase's last word naming a part of the image rather than an object.
IMAGE_PARTS = frozenset({
    "edge", "edges", "border", "borders", "side", "sides", "corner", "corners", "image", "picture", "scene",
    "top", "bottom", "left", "right", "centre", "center", "middle", "frame", "margin",
})

# Words that end no noun phrase: "the pond nearest to" has no anchor.
FUNCTION_WORDS = frozenset({"to", "of", "the", "a", "an", "and", "or", "from", "with", "at", "in", "on"})

# Words that place or rank the object among others of its kind; the subject drops them.
RANKING_WORDS = frozenset({"largest", "smallest", "biggest", "tallest", "longest", "widest", "first", "second",
                           "third", "fourth", "fifth", "last", "leftmost", "rightmost", "topmost", "bottommost"})
_LOCATION = re.compile(r"\s(at|in|on|towards|toward)\s+(the\s+)?\S", re.IGNORECASE)

_RELATION = re.compile(r"\s(" + "|".join(re.escape(r) for r in RELATIONS) + r")\s+(?P<anchor>\S.*)$",
                       re.IGNORECASE)


def relation_anchor(phrase: str) -> str | None:
    """The anchor phrase of a relational referring phrase, or None.

    Args:
        phrase: a referring phrase, e.g. "the small building next to the red tank".

    Returns:
        The words after the first spatial relation ("the red tank"), without trailing punctuation; None when the
        phrase has no relation, nothing follows it, or the anchor names a part of the image ("the top edge").
    """
    match = _RELATION.search(" " + phrase.strip())
    if match is None:
        return None
    anchor = match["anchor"].strip().rstrip(".,;:!?").strip()
    own_relation = _RELATION.search(" " + anchor)  # "the building closest to the top edge": its head is "building"
    head = anchor if own_relation is None else anchor[:max(own_relation.start() - 1, 0)]
    words = head.lower().split()
    if not words or words[-1] in IMAGE_PARTS or words[-1] in FUNCTION_WORDS:
        return None
    return anchor


def relation_subject(phrase: str) -> str | None:
    """What kind of object a phrase names, when the phrase says more: the words before its first relation or
    location, without the words that rank it.

    Args:
        phrase: a referring phrase, e.g. "the tank closest to the right edge".

    Returns:
        "the tank" for "the tank closest to the right edge", "the red building" for "the red building at the top
        left", "the building" for "the second largest building"; None when the phrase is nothing but its subject
        ("the small pond") or nothing names a kind.
    """
    text = " " + phrase.strip().rstrip(".,;:!?")
    cuts = [m.start() for m in (_RELATION.search(text), _LOCATION.search(text)) if m is not None]
    head = text[:min(cuts)] if cuts else text
    words = [w for w in head.split() if w.lower() not in RANKING_WORDS]
    if not words or words[-1].lower() in FUNCTION_WORDS | IMAGE_PARTS:
        return None
    subject = " ".join(words)
    return None if subject == " ".join(text.split()) else subject
