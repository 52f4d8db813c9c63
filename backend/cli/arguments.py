"""Argument parsing shared by the ``segment`` and ``batch`` commands: number lists, ``--resolution`` and the
phrases (positional or ``--phrase``, plus ``--phrases-file``), checked before anything heavy is imported."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from backend.errors import BackendError
from backend.output.preflight import check_utf8, decode_utf8
from backend.protocol import RESOLUTION_AUTO


def number_list(kind: type, count: int, what: str):
    """An argparse type parsing ``count`` comma-separated numbers."""
    def parse(text: str) -> tuple:
        try:
            values = tuple(kind(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not values or (count and len(values) != count):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return values
    return parse


def resolution_value(text: str) -> float | str | None:
    """``--resolution``: "auto", "native" (None) or a number of map units per pixel (its range is checked by
    ``segment.check_search_numbers``, which says what to give instead)."""
    if text.strip().lower() in (RESOLUTION_AUTO, "native"):
        return None if text.strip().lower() == "native" else RESOLUTION_AUTO
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 'native' or a positive number, got {text!r}") from None


def square_metres(text: str) -> float:
    """``--min-area``: a finite number of square metres >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of square metres >= 0, got {text!r}")
    return value


def read_phrases(args: argparse.Namespace, *, missing_hint: str) -> tuple[str, ...]:
    """The phrases of the command line (``args.phrases``) and of ``--phrases-file``, each checked to be valid UTF-8.

    Args:
        args: the parsed command line.
        missing_hint: how to give a phrase on this command's line (the hint when there is none).

    Raises:
        BackendError: ``empty_query`` without any phrase; ``bad_request`` for an unreadable file or text that is
            not UTF-8.
    """
    phrases = list(args.phrases)
    for number, phrase in enumerate(phrases, 1):
        check_utf8(phrase, f"phrase {number}")
    if args.phrases_file:
        try:
            data = Path(args.phrases_file).read_bytes()
        except OSError as err:
            raise BackendError("bad_request", f"cannot read {args.phrases_file!r}: {err.strerror}",
                               "give a readable UTF-8 text file with one phrase per line") from err
        text = decode_utf8(data, f"the phrases file {args.phrases_file!r}")
        phrases += [line.strip() for line in text.splitlines() if line.strip()]
    if not phrases:
        raise BackendError("empty_query", "no phrase given", missing_hint)
    return tuple(phrases)
