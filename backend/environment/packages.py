"""Whether this Python can run the backend, and the error that says what to do when it cannot.

A Python without our packages (a bare venv, a half-finished "Set up backend…", QGIS's own interpreter) is a
setting to change, not a bug: the worker, the CLI and ``backend info`` all report it with code ``environment``,
naming the interpreter, every package it lacks and the setting that chooses another one. Standard library only,
so that this module itself imports in exactly those environments.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

from backend.errors import BackendError

# What the worker imports to run a model (import names), in the order a user would install them.
REQUIRED_MODULES = ("torch", "torchvision", "numpy", "open_clip", "segment_anything", "safetensors", "tokenizers",
                    "rasterio", "shapely", "scipy", "pyogrio", "tqdm")

CHOOSE_ANOTHER_HINT = ("choose another in Plugins → RSRefSeg 2 → Settings… → Worker Python, or run Plugins → "
                       "RSRefSeg 2 → Set up backend…; outside QGIS, install the backend's requirements into it "
                       "(pip install -r backend/requirements.txt)")


def missing_modules(required: Sequence[str] = REQUIRED_MODULES) -> list[str]:
    """The modules of ``required`` this Python cannot find (looked up without importing them)."""
    missing = []
    for name in required:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken parent package or a module with no spec
            found = False
        if not found:
            missing.append(name)
    return missing


def lacking_packages(missing: Sequence[str]) -> BackendError:
    """The ``environment`` error for a Python that lacks the modules ``missing`` (import names)."""
    return BackendError("environment", f"this Python ({sys.executable}) lacks {', '.join(missing)}",
                        CHOOSE_ANOTHER_HINT)


def require_packages(required: Sequence[str] = REQUIRED_MODULES) -> None:
    """Raise ``lacking_packages`` when any of ``required`` is missing (before a model load starts any work)."""
    missing = missing_modules(required)
    if missing:
        raise lacking_packages(missing)


def import_failure(exc: ImportError) -> BackendError | None:
    """The ``environment`` error for an import that failed in a third-party package, or None when the failing
    module is the backend's own (a broken installation of the plugin, which stays an internal error)."""
    name = (exc.name or "").split(".")[0]
    if name == "backend":
        return None
    if isinstance(exc, ModuleNotFoundError) and name:
        missing = missing_modules()  # every one at once, not one per try
        return lacking_packages(missing if name in missing else [name, *missing])
    return BackendError("environment", f"this Python ({sys.executable}) cannot import a package the backend "
                        f"needs: {exc}", CHOOSE_ANOTHER_HINT)
