"""JSON from files we did not write ourselves (sidecars, safetensors headers), parsed within bounds.

``json.loads`` recurses once per nesting level (100000 ``[`` raise ``RecursionError``) and converts integer
literals of any length (5000 digits raise a ``ValueError`` about ``sys.set_int_max_str_digits``, after quadratic
work). ``loads_bounded`` turns both, and values nested deeper than any file of ours nests, into one
``JsonLimitError`` whose text says what was refused, so every reader reports it as its own coded error.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # our sidecars nest 5 levels, safetensors headers 3
MAX_INT_DIGITS = 400  # no size, count or byte offset of ours comes near 10^20


class JsonLimitError(ValueError):
    """The text is not JSON, or is JSON beyond the bounds (nesting, integer length); the message says which."""


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonLimitError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS} are read)")
    return int(text)


def _depth_ok(value: Any) -> bool:
    """Whether ``value`` nests at most ``MAX_DEPTH`` containers deep (iterative: no recursion to exhaust)."""
    level = [value]
    for _ in range(MAX_DEPTH):
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return True
    return not any(isinstance(item, (dict, list)) for item in level)


def loads_bounded(text: str | bytes) -> Any:
    """``json.loads(text)`` for untrusted files.

    Args:
        text: the JSON document (bytes are decoded as UTF-8).

    Returns:
        The parsed value (NaN and Infinity parse to floats, as Python writes them; callers check numbers).

    Raises:
        JsonLimitError: not UTF-8, not JSON, an integer of more than ``MAX_INT_DIGITS`` digits, or containers
            nested more than ``MAX_DEPTH`` deep.
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_int=_bounded_int)
    except JsonLimitError:
        raise
    except UnicodeDecodeError as exc:
        raise JsonLimitError(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise JsonLimitError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonLimitError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if not _depth_ok(value):
        raise JsonLimitError(f"JSON nested deeper than {MAX_DEPTH} levels")
    return value
