"""Where things are at run time, in a checkout and in the installable ZIP.

Checkout: ``<repo>/rsrefseg2_qgis/`` (this package), ``<repo>/backend/``, ``<repo>/resources/``, and the
project's venv at ``<repo>/.venv``. ZIP: everything inside one folder,
``rsrefseg2_qgis/{__init__.py, backend/, resources/, …}``. The *backend root* is the folder that contains
``backend/``; the worker runs with it as working directory and ``PYTHONPATH``.

The protocol module is loaded from its file under a private module name, so that QGIS's Python never gets a
generic top-level ``backend`` package on ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

PLUGIN_DIR = Path(__file__).resolve().parent
PROTOCOL_MODULE_NAME = "rsrefseg2_qgis._backend_protocol"
PRIVATE_VENV_SUBDIR = "rsrefseg2/venv"
DEMO_CHECKPOINT = "demo-synthetic.safetensors"  # under resources/models/, with its .json sidecar


class LayoutError(RuntimeError):
    """The plugin folder is incomplete (no ``backend/`` or ``resources/`` next to or inside it)."""


def _find_root(plugin_dir: Path, marker: str) -> Path:
    for candidate in (plugin_dir, plugin_dir.parent):
        if (candidate / marker).exists():
            return candidate
    raise LayoutError(
        f"{marker} was found neither in {plugin_dir} nor in {plugin_dir.parent}; reinstall the plugin ZIP "
        "or run QGIS on a complete checkout of the project."
    )


def backend_root(plugin_dir: Path = PLUGIN_DIR) -> Path:
    """The folder that contains ``backend/protocol.py`` (the plugin folder in the ZIP, its parent in a checkout)."""
    return _find_root(plugin_dir, "backend/protocol.py")


def resources_dir(plugin_dir: Path = PLUGIN_DIR) -> Path:
    """The ``resources/`` folder (icons, sample raster, bundled models)."""
    return _find_root(plugin_dir, "resources/icon.svg") / "resources"


def icon_path(name: str = "icon.svg", plugin_dir: Path = PLUGIN_DIR) -> str:
    """Path of an icon file in ``resources/`` as a string (what ``QIcon`` takes)."""
    return str(resources_dir(plugin_dir) / name)


def demo_checkpoint(plugin_dir: Path = PLUGIN_DIR) -> Path | None:
    """The bundled demo checkpoint ``resources/models/<DEMO_CHECKPOINT>``, or None when not shipped."""
    path = resources_dir(plugin_dir) / "models" / DEMO_CHECKPOINT
    return path if path.is_file() else None


def load_protocol(plugin_dir: Path = PLUGIN_DIR) -> ModuleType:
    """Import ``backend/protocol.py`` from its file under a private module name (cached after the first call).

    Returns:
        The protocol module (pure Python: message dataclasses, ``encode``, ``decode``, ``ProtocolError``).
    """
    cached = sys.modules.get(PROTOCOL_MODULE_NAME)
    if cached is not None:
        return cached
    path = backend_root(plugin_dir) / "backend" / "protocol.py"
    spec = importlib.util.spec_from_file_location(PROTOCOL_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise LayoutError(f"cannot import the worker protocol from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PROTOCOL_MODULE_NAME] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PROTOCOL_MODULE_NAME]
        raise
    return module


def venv_python(venv_dir: Path) -> Path:
    """The interpreter inside a venv folder (``Scripts/python.exe`` on Windows, ``bin/python`` elsewhere)."""
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def private_venv_dir(profile_dir: Path) -> Path:
    """The venv that "Set up backend…" creates under the QGIS profile folder ``profile_dir``."""
    return profile_dir / PRIVATE_VENV_SUBDIR


def default_python(profile_dir: Path, plugin_dir: Path = PLUGIN_DIR) -> Path:
    """The worker interpreter to use when the settings name none.

    Args:
        profile_dir: the QGIS profile folder (``QgsApplication.qgisSettingsDirPath()``).
        plugin_dir: this package's folder.

    Returns:
        ``<repo>/.venv``'s Python when running from a checkout that has one, else the private venv's Python
        (which may not exist yet: "Set up backend…" creates it).
    """
    checkout_python = venv_python(plugin_dir.parent / ".venv")
    if (plugin_dir.parent / "backend").is_dir() and checkout_python.exists():
        return checkout_python
    return venv_python(private_venv_dir(profile_dir))
