"""Structured errors that cross the worker boundary and reach the user as actionable text.

Every failure the engine can foresee is a ``BackendError`` with a stable machine-readable ``code``, a
``message`` that says what went wrong and a ``hint`` that says what to do about it. The worker sends the three
fields as an ``error`` message; the CLI prints them and exits with the code's exit status.
"""

from __future__ import annotations

from dataclasses import dataclass

# code → CLI exit status. Codes are part of the protocol: add new ones, never rename.
EXIT_CODES: dict[str, int] = {
    "bad_request": 2,
    "empty_query": 2,
    "not_a_raster": 3,
    "no_crs": 3,
    "window_outside": 3,
    "all_nodata": 3,
    "bad_band": 3,
    "too_large": 3,
    "checkpoint": 4,
    "weights": 4,
    "out_of_memory": 5,
    "device": 5,
    "cancelled": 6,
    "output_exists": 7,
    "internal": 1,
}


@dataclass
class BackendError(Exception):
    """A foreseen failure: ``code`` (a key of ``EXIT_CODES``), ``message`` (what) and ``hint`` (what to do)."""

    code: str
    message: str
    hint: str = ""

    def __post_init__(self) -> None:
        if self.code not in EXIT_CODES:
            raise ValueError(f"unknown error code {self.code!r}")
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.code]

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}
