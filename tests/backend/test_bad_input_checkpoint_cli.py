"""Hostile checkpoint files reach a command-line user as one ``error:``/``hint:`` pair with the checkpoint exit
status (4), before any pixel is read: never a traceback, never "this is a bug" (second hostile sweep).

Real files: a tiny checkpoint written by ``save_checkpoint``, then its sidecar or header edited on disk; the real
``python -m backend segment`` entry point (``backend.cli.main``) on a real GeoTIFF.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rasters import write_geotiff

from backend.cli import main
from backend.model import build_model, load_config, save_checkpoint


def _sidecar(key: str, value):
    def edit(path: Path) -> None:
        sidecar = path.with_suffix(".json")
        data = json.loads(sidecar.read_text())
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        sidecar.write_text(json.dumps(data))
    return edit


def _deep_sidecar(path: Path) -> None:
    path.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)


def _huge_header_integer(path: Path) -> None:
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    name = next(k for k in header if k != "__metadata__")
    text = json.dumps(header).replace(json.dumps(header[name]["data_offsets"]), f"[0, {'9' * 5000}]", 1).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length:])


@pytest.mark.parametrize(("edit", "words"), [
    (_deep_sidecar, "nested deeper than 32 levels"),
    (_huge_header_integer, "an integer of 5000 digits"),
    (_sidecar("meta.gsd_range_m", [1e-300, 1e-300]), "meta.gsd_range_m must be [lo, hi]"),
    (_sidecar("config.input_size", 100000), "config.input_size must be a multiple of 16 from 16 to 4096"),
    (_sidecar("config.clip.name", "ViT-B-32"), 'config.clip.name is "ViT-B-32" in model.json but "tiny-clip"'),
], ids=["deep-sidecar", "huge-header-int", "gsd-1e-300", "input-size-100000", "edited-clip-name"])
def test_a_hostile_checkpoint_is_an_error_and_a_hint(tmp_path, capsys, edit, words) -> None:
    checkpoint = tmp_path / "model.safetensors"
    save_checkpoint(build_model(load_config("tiny")), checkpoint, include_base=True)
    edit(checkpoint)
    scene = write_geotiff(tmp_path / "scene.tif", np.full((3, 64, 64), 120, np.uint8))
    out = tmp_path / "out.gpkg"
    assert main(["segment", str(scene), "the tank", "-o", str(out), "--checkpoint", str(checkpoint),
                 "--device", "cpu"]) == 4
    err = capsys.readouterr().err
    assert "error: " in err and "hint: " in err and words in err, err
    assert "Traceback" not in err and "bug" not in err and not out.exists()
