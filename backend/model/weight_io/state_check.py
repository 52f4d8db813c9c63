"""One wording for a state dict that does not fit its module: missing keys, unexpected keys, wrong shapes.

Every loader (trained checkpoints, SAM and SAM 2.1 base weights) reports a mismatch through ``key_problems``,
so a user sees the same phrases, each list capped, whichever file was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

SHOWN = 10  # names listed per kind of problem; the rest are counted


def _listed(items: list[str]) -> str:
    more = len(items) - SHOWN
    return ", ".join(items[:SHOWN]) + (f" … and {more} more" if more > 0 else "")


def key_problems(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                 required: Iterable[str] | None = None) -> list[str]:
    """What keeps ``state`` from loading into a module whose state dict is ``expected``.

    Args:
        state: the file's tensors by key.
        expected: the module's tensors by key (their shapes are the reference).
        required: the keys the file must hold (default: all of ``expected``); keys of ``state`` outside them are
            unexpected.

    Returns:
        One line per kind of problem ("missing keys: …", "unexpected keys: …", "wrong shapes: key (file shape)
        != (module shape)"), empty when the state fits.
    """
    required = set(expected if required is None else required)
    missing = sorted(required - set(state))
    unexpected = sorted(set(state) - required)
    shapes = sorted(f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                    for k in required & set(state) if state[k].shape != expected[k].shape)
    return [f"{label}: {_listed(items)}" for label, items in
            (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)) if items]
