"""Hugging Face ``transformers`` as a test-only reference for SigLIP, installed apart (like the SAM 2 reference).

It is not a dependency of the project: ``pip install --no-deps --target .venv/reference/transformers
transformers`` puts it in a folder that is appended to the END of ``sys.path`` only by the tests that use it; they
are skipped when the folder is absent.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

REFERENCE_DIR = Path(__file__).resolve().parents[2] / ".venv" / "reference" / "transformers"


def transformers() -> ModuleType:
    """The ``transformers`` package from the reference folder; skips the test when it is not installed."""
    if not (REFERENCE_DIR / "transformers").is_dir():
        pytest.skip(f"transformers reference not installed in {REFERENCE_DIR}")
    if str(REFERENCE_DIR) not in sys.path:
        sys.path.append(str(REFERENCE_DIR))
    return importlib.import_module("transformers")
