"""Warnings about an answer are computed once, by the engine, and reach every front end (issue 25).

A view read finer than its raster (upsampling invents no detail), one far outside the model's training
resolution, and a phrase longer than the text encoder reads: each is a sentence on ``SegmentResult.warnings``,
told first as a ``WARNING_STAGE`` progress, carried by the worker's ``Result`` and printed by the CLI.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rasterio.crs import CRS

from backend.cli import main
from backend.engine import Engine, SegmentJob
from backend.loading import load_predictor
from backend.protocol import (
    WARNING_STAGE,
    Load,
    Outputs,
    ProtocolError,
    Result,
    Segment,
    Shutdown,
    Window,
    decode,
    encode,
)
from backend.raster.resolution import resolution_warnings

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "models" / "demo-synthetic.safetensors"  # trained at 0.6–2 m/px
PIXELS = (336, 280, 96, 64)  # col, row, width, height of the 0.5 m sample
UTM = CRS.from_epsg(32633)
CENTRE = (603128.0, 5339872.0)
FINER = "the view is read at 0.25 m/px, finer than the raster's 0.5 m/px: upsampling invents no detail"
FAR_FINER = "the view is read at 0.25 m/px, far finer than the 0.6–2 m/px the model was trained at"
LONG = " ".join(["the", "large", "red", "roof", "by", "a", "pond", "and", "tank"] * 4 + ["last"])


def test_a_view_finer_than_the_raster_and_one_far_from_the_training_scale_are_told() -> None:
    def told(used: float, gsd=(0.6, 2.0)) -> list[str]:
        return resolution_warnings(crs=UTM, native=(0.5, 0.5), used=(used, used), centre=CENTRE, gsd_range_m=gsd)

    finer, far = told(0.25)
    assert finer.startswith(FINER) and far.startswith(FAR_FINER)
    assert told(0.5) == [] and told(2.9) == []  # within 1.5× of the training range: no word
    (coarse,) = told(5.0)
    assert coarse.startswith("the view is read at 5 m/px, far coarser than the 0.6–2 m/px") and "smaller" in coarse
    (only_finer,) = told(0.25, gsd=None)  # a model without a training range: only the upsampling is told
    assert only_finer.startswith(FINER)
    degrees = resolution_warnings(crs=CRS.from_epsg(4326), native=(4.5e-6, 4.5e-6), used=(2.25e-6, 2.25e-6),
                                  centre=(15.0, 48.0), gsd_range_m=None)
    assert len(degrees) == 1 and "2.25e-06°/px ≈ 0.2" in degrees[0]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_predictor(checkpoint=str(DEMO), device="cpu"))


def test_the_engine_puts_the_warnings_on_the_outcome_and_tells_them_before_the_model_runs(engine, sample_tif,
                                                                                         tmp_path) -> None:
    events: list[tuple[str, str]] = []
    result = engine.run(SegmentJob(raster=str(sample_tif), phrases=("the pond", LONG), output_dir=str(tmp_path),
                                   window=Window(pixels=PIXELS), resolution=0.25),
                        progress=lambda _fraction, stage, message: events.append((stage, message)))
    phrase, finer, far = result.warnings
    assert phrase.startswith("phrase 2 is longer than the model reads (32 tokens)")
    assert finer.startswith(FINER) and far.startswith(FAR_FINER)
    assert events[:3] == [(WARNING_STAGE, w) for w in result.warnings]  # before any model work
    assert [stage for stage, _ in events].count(WARNING_STAGE) == 3
    native = engine.run(SegmentJob(raster=str(sample_tif), phrases=("the pond",), output_dir=str(tmp_path),
                                   overwrite=True, window=Window(pixels=PIXELS), resolution=None))
    assert native.warnings == ()


def test_the_worker_reply_carries_the_warnings(sample_tif, tmp_path) -> None:
    requests = [Load(id="load", checkpoint=str(DEMO), device="cpu"),
                Segment(id="fine", raster=str(sample_tif), phrases=("the pond", LONG), output_dir=str(tmp_path),
                        window=Window(pixels=PIXELS), resolution=0.25),
                Segment(id="native", raster=str(sample_tif), phrases=("the pond",), output_dir=str(tmp_path),
                        window=Window(pixels=PIXELS), resolution=None),
                Shutdown(id="bye")]
    done = subprocess.run([sys.executable, "-m", "backend.worker"], cwd=ROOT, capture_output=True, timeout=300,
                          input="".join(encode(r) + "\n" for r in requests), text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr[-2000:]
    replies = [decode(line) for line in done.stdout.splitlines()]
    fine = next(m for m in replies if m.id == "fine" and m.TYPE == "result")
    assert len(fine.warnings) == 3
    assert fine.warnings[0].startswith("phrase 2 is longer than the model reads")
    assert fine.warnings[1].startswith(FINER) and fine.warnings[2].startswith(FAR_FINER)
    told = [m.message for m in replies if m.id == "fine" and m.TYPE == "progress" and m.stage == WARNING_STAGE]
    assert told == list(fine.warnings)
    native = next(m for m in replies if m.id == "native" and m.TYPE == "result")
    assert native.warnings == ()


def test_result_warnings_are_a_list_of_strings_on_the_wire() -> None:
    result = Result(id="r", outputs=Outputs(geojson="a.geojson"), phrases=(), crs="", warnings=("a", "b"))
    line = encode(result)
    assert '"warnings":["a","b"]' in line and decode(line).warnings == ("a", "b")
    assert decode(line.replace('"warnings":["a","b"]', '"x":1')).warnings == ()  # an older worker's reply
    with pytest.raises(ProtocolError, match=r"result\.warnings\[1\]: expected a string"):
        decode(line.replace('["a","b"]', '["a",2]'))


def test_the_cli_prints_each_warning_once_on_stderr(sample_tif, tmp_path, capsys) -> None:
    code = main(["segment", str(sample_tif), "the pond", "--resolution", "0.25",
                 f"--pixels={','.join(map(str, PIXELS))}", "-o", str(tmp_path / "pond.gpkg"), "--device", "cpu"])
    assert code == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 2, captured.err
    assert lines[0].startswith(f"warning: {FINER}") and lines[1].startswith(f"warning: {FAR_FINER}")
    assert "warning" not in captured.out
