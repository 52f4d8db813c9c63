"""The plugin finds backend/ and resources/ in a checkout and in the ZIP layout, and imports the protocol privately."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from rsrefseg2_qgis import paths

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_layout() -> None:
    assert paths.backend_root() == ROOT
    assert paths.resources_dir() == ROOT / "resources"
    assert paths.default_python(Path("/nonexistent-profile")) == paths.venv_python(ROOT / ".venv")


def test_zip_layout(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "rsrefseg2_qgis"
    (plugin / "backend").mkdir(parents=True)
    shutil.copy(ROOT / "backend" / "protocol.py", plugin / "backend" / "protocol.py")
    shutil.copytree(ROOT / "resources", plugin / "resources", ignore=shutil.ignore_patterns("*.tif"))
    assert paths.backend_root(plugin) == plugin
    assert paths.resources_dir(plugin) == plugin / "resources"
    profile = tmp_path / "profile"
    assert paths.default_python(profile, plugin) == paths.venv_python(profile / "rsrefseg2" / "venv")


def test_incomplete_layout_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(paths.LayoutError, match="backend/protocol.py"):
        paths.backend_root(tmp_path / "rsrefseg2_qgis")


def test_protocol_is_loaded_without_a_top_level_backend_package() -> None:
    had_backend = "backend" in sys.modules
    protocol = paths.load_protocol()
    assert protocol.__name__ == paths.PROTOCOL_MODULE_NAME
    assert protocol.decode(protocol.encode(protocol.Ping(id="a"))) == protocol.Ping(id="a")
    assert ("backend" in sys.modules) == had_backend
