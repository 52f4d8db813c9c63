"""Structured errors that cross the worker boundary and reach the user as actionable text.

Every failure the engine can foresee is a ``BackendError`` with a stable machine-readable ``code``, a
``message`` that says what went wrong and a ``hint`` that says what to do about it. The worker sends the three
fields as an ``error`` message; the CLI prints them and exits with the code's exit status.

Messages often quote a library's own error text. ``safe_text`` is applied to every message and hint when a
``BackendError`` is built (and by the worker to unforeseen errors), so library advice that would be unsafe for
a user to follow, such as torch's "re-run with weights_only=False" for a pickle, never reaches the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# code → CLI exit status. Codes are part of the protocol: add new ones, never rename.
EXIT_CODES: dict[str, int] = {
    "bad_request": 2,
    "empty_query": 2,
    "not_cached": 2,
    "not_a_raster": 3,
    "bad_raster": 3,
    "no_crs": 3,
    "window_outside": 3,
    "all_nodata": 3,
    "bad_band": 3,
    "too_large": 3,
    "checkpoint": 4,
    "weights": 4,
    "out_of_memory": 5,
    "disk_full": 5,
    "device": 5,
    "cancelled": 6,
    "output_exists": 7,
    "environment": 8,
    "internal": 1,
}


# Library texts that advise loading a file with code execution enabled (torch.load's weights_only / Unpickler
# messages, pickle allow-lists). Everything from the sentence that starts such advice onwards is replaced.
# Whole words only, so a file or folder name such as "no_unpickling_here/" does not trigger it.
_UNSAFE_ADVICE = re.compile(r"\b(?:weights[ _]only|unpickler|unpickling|safe_globals|arbitrary code"
                            r"|trust(?:ed)? (?:the )?source)\b", re.IGNORECASE)
# Where a quoted library text begins: after ": ", "; ", a sentence end or a line break.
_SENTENCE_START = re.compile(r"(?::|;|\.|\n)\s+")
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
SAFE_REPLACEMENT = ("the file holds Python objects besides tensors (a pickle), which are never loaded because "
                    "loading them could run code; use the official weights file or a .safetensors file "
                    "from a source you trust, and never load it with unsafe options")


def safe_text(text: str) -> str:
    """``text`` without terminal colour codes and without unsafe advice quoted from a library.

    Args:
        text: a message or hint, possibly ending with a library's exception text.

    Returns:
        The text unchanged when it holds no unsafe advice; otherwise the text up to the sentence where the
        advice starts, followed by ``SAFE_REPLACEMENT`` (what the file is and what to do instead).
    """
    text = _ANSI_ESCAPE.sub("", text)
    match = _UNSAFE_ADVICE.search(text)
    if match is None:
        return text
    starts = [m.start() for m in _SENTENCE_START.finditer(text, 0, match.start())]
    kept = text[:starts[-1]].rstrip(" :;.") if starts else ""
    return f"{kept}: {SAFE_REPLACEMENT}" if kept else SAFE_REPLACEMENT[0].upper() + SAFE_REPLACEMENT[1:]


@dataclass
class BackendError(Exception):
    """A foreseen failure: ``code`` (a key of ``EXIT_CODES``), ``message`` (what) and ``hint`` (what to do).

    Both texts pass through ``safe_text`` here, the one place every foreseen error is built.
    """

    code: str
    message: str
    hint: str = ""

    def __post_init__(self) -> None:
        if self.code not in EXIT_CODES:
            raise ValueError(f"unknown error code {self.code!r}")
        self.message, self.hint = safe_text(self.message), safe_text(self.hint)
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.code]

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


def counted(count: int, singular: str, plural: str = "") -> str:
    """``count`` with its noun as English says it: "0 polygons", "1 polygon", "3 polygons".

    Args:
        count: how many.
        singular: the noun for one ("polygon").
        plural: the noun for any other count (default: ``singular`` + "s").
    """
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
