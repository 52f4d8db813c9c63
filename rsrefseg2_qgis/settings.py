"""The plugin's settings: one frozen dataclass read from and written to ``QgsSettings`` under ``rsrefseg2/``."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

from . import paths
from .requests import PRECISIONS, REFINEMENTS, request_tile_grid

PREFIX = "rsrefseg2/"
HISTORY_LENGTH = 20
PYTHON_ENV = "RSREFSEG2_PYTHON"  # a worker interpreter chosen outside QGIS (headless runs); beats the setting


@dataclass(frozen=True)
class PluginSettings:
    """What the user configured once and expects to find again.

    Attributes:
        python: worker interpreter; "" means the default (see ``paths.default_python``). The environment
            variable ``RSREFSEG2_PYTHON`` overrides it.
        threads: torch threads of the worker; 0 = the worker decides from the machine (cores, load).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        precision: compute precision the worker loads the model in: "auto" (bf16 where the device computes it
            natively), "fp32" or "bf16".
        mode: "trained" (a checkpoint) or "zero-shot" (base CLIP + SAM weights only).
        checkpoint: a ``.safetensors`` checkpoint; "" means the bundled demo model when it exists.
        clip_weights, sam_weights: local base weights (needed for zero-shot and for full-size checkpoints).
        refine: how a view larger than the model input is refined ("prompts", "phrase", "box" or "none").
        tile_size, overlap: the engine's tile grid in pixels; tile_size 0 = the model's input size (and an
            eighth of it as overlap).
        threshold: mask probability threshold.
        max_pixels: the largest window (width × height) a query may cover.
        history: the last phrases, newest first.
    """

    python: str = ""
    threads: int = 0
    device: str = "auto"
    precision: str = PRECISIONS[0][0]
    mode: str = "trained"
    checkpoint: str = ""
    clip_weights: str = ""
    sam_weights: str = ""
    refine: str = REFINEMENTS[0][0]
    tile_size: int = 0
    overlap: int = 64
    threshold: float = 0.5
    max_pixels: int = 64_000_000
    history: tuple[str, ...] = ()

    @classmethod
    def load(cls, store: QgsSettings | None = None) -> PluginSettings:
        """Read every field from ``store`` (default: a new ``QgsSettings``), falling back to the defaults."""
        store = store or QgsSettings()
        values = {}
        for field in fields(cls):
            default = field.default
            raw = store.value(PREFIX + field.name, None)
            if raw is None:
                continue
            if isinstance(default, tuple):
                values[field.name] = tuple(str(item) for item in (raw if isinstance(raw, list) else [raw]) if item)
            else:
                try:
                    values[field.name] = type(default)(raw)
                except (TypeError, ValueError):
                    continue  # a hand-edited value that does not parse keeps the default
        for name, choices in (("refine", REFINEMENTS), ("precision", PRECISIONS)):
            if name in values and values[name] not in {value for value, _ in choices}:
                del values[name]  # e.g. written by another version: the worker would refuse it
        return cls(**values)

    def save(self, store: QgsSettings | None = None) -> None:
        """Write every field to ``store`` (default: a new ``QgsSettings``)."""
        store = store or QgsSettings()
        for field in fields(self):
            value = getattr(self, field.name)
            store.setValue(PREFIX + field.name, list(value) if isinstance(value, tuple) else value)

    def with_phrase(self, phrase: str) -> PluginSettings:
        """A copy with ``phrase`` first in the history (no duplicates, at most ``HISTORY_LENGTH`` entries)."""
        rest = [item for item in self.history if item != phrase]
        return replace(self, history=(phrase, *rest)[:HISTORY_LENGTH])

    def tile_grid(self) -> tuple[int | None, int | None]:
        """(tile_size, overlap) for a request: None, None when the tile size is automatic."""
        return request_tile_grid(self.tile_size, self.overlap)

    def worker_python(self) -> Path:
        """The interpreter that runs the worker: ``$RSREFSEG2_PYTHON``, else the configured one, else the default."""
        chosen = os.environ.get(PYTHON_ENV, "").strip()
        if chosen:
            return Path(chosen)
        if self.python:
            return Path(self.python)
        return paths.default_python(Path(QgsApplication.qgisSettingsDirPath()))


@dataclass(frozen=True)
class ModelChoice:
    """Which weights a ``load`` request names.

    Attributes:
        checkpoint: a checkpoint path, or None for a random-init model from ``config``.
        config: a model config name (``"tiny"``) used when there is no checkpoint.
        untrained: True when the model is random init; the UI says so.
    """

    checkpoint: str | None
    config: str | None
    untrained: bool


def model_choice(checkpoint: str, mode: str) -> ModelChoice:
    """Resolve the model to load.

    Args:
        checkpoint: the user's checkpoint path, or "" for the default.
        mode: "trained" or "zero-shot".

    Returns:
        The user's checkpoint; else the bundled demo checkpoint when present; else the tiny config with random
        weights (clearly untrained). Zero-shot needs no checkpoint and uses the tiny config's architecture
        only when no base weights are configured.
    """
    if mode == "trained" and checkpoint:
        return ModelChoice(checkpoint=checkpoint, config=None, untrained=False)
    demo = paths.demo_checkpoint() if mode == "trained" else None
    if demo is not None:
        return ModelChoice(checkpoint=str(demo), config=None, untrained=False)
    return ModelChoice(checkpoint=None, config="tiny", untrained=True)
