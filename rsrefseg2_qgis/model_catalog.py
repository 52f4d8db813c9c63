"""The trained models a user can choose by name: the checkpoints imported into the weights folder (the authors'
RSRefSeg 2 weights after ``python -m backend weights download rsrefseg2-rrsisd``, or ``weights import-authors``).

They live in ``<weights folder>/checkpoints/<name>.safetensors`` with a ``.json`` sidecar whose ``meta`` says what
they are (title, description, dataset). Only the sidecar is read here (plain JSON, never the weights); the worker
loads the chosen file by its path. The weights folder is found by the rule the backend uses, from the shared
protocol module (``backend/protocol.py``), without importing the rest of the backend.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .paths import load_protocol

_SCORES = re.compile(r"gIoU (\d+(?:\.\d+)?) / cIoU (\d+(?:\.\d+)?)")


def weights_dir() -> Path:
    """The backend's weights folder, by the rule in ``backend/protocol.py`` (``RSREFSEG2_WEIGHTS_DIR`` or the
    platform's cache folder + ``rsrefseg2``)."""
    return load_protocol().weights_dir()


@dataclass(frozen=True)
class ImportedModel:
    """One imported checkpoint.

    Attributes:
        name: what it was imported as ("rsrefseg2-rrsisd"; also what ``--checkpoint`` takes).
        path: the ``.safetensors`` file (what the worker is sent).
        dataset: what it was trained on ("RRSIS-D"), "" when the sidecar does not say.
        score: the reported accuracy found in its description ("gIoU 69.06 / cIoU 79.66"), or "".
        description: its sidecar description (who measured the score, on which split).
    """

    name: str
    path: Path
    dataset: str
    score: str
    description: str

    @property
    def label(self) -> str:
        """"rsrefseg2-rrsisd — RRSIS-D, gIoU 69.06 / cIoU 79.66" (as much as the sidecar says)."""
        details = ", ".join(part for part in (self.dataset, self.score) if part)
        return f"{self.name} — {details}" if details else self.name

    @property
    def tooltip(self) -> str:
        return "\n".join(part for part in (self.description, str(self.path)) if part)


def _read(path: Path) -> ImportedModel | None:
    """The model of ``path`` from its sidecar; None when the sidecar is missing or not JSON (not loadable)."""
    try:
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    meta = sidecar.get("meta") if isinstance(sidecar, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    description = str(meta.get("description") or "")
    found = _SCORES.search(description)
    return ImportedModel(name=path.stem, path=path, dataset=str(meta.get("dataset") or ""),
                         score=f"gIoU {found[1]} / cIoU {found[2]}" if found else "", description=description)


def imported_models(directory: Path | None = None) -> list[ImportedModel]:
    """The imported checkpoints in the weights folder ``directory`` (default ``weights_dir()``), by name."""
    folder = (directory or weights_dir()) / "checkpoints"
    if not folder.is_dir():
        return []
    found = (_read(path) for path in sorted(folder.glob("*.safetensors")))
    return [model for model in found if model is not None]
