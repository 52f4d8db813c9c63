"""Fixtures shared by every test package (QGIS-agnostic)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_TIF = ROOT / "resources" / "sample" / "sample.tif"


@pytest.fixture
def sample_tif(tmp_path: Path) -> Path:
    """A private copy of the bundled sample GeoTIFF (512×512 RGB uint8, EPSG:32633, 0.5 m/px)."""
    if not SAMPLE_TIF.is_file():
        pytest.fail(f"{SAMPLE_TIF} is missing: run `python -m training.make_sample` to write it")
    return Path(shutil.copy(SAMPLE_TIF, tmp_path / "sample.tif"))
