""""Every match" keeps objects, not specks: a minimum ground area in m², by default the model's (issue 25).

Reading the 0.5 m sample at 0.25 m/px upsamples it; find-all then returned specks of 1–5 m² beside the real
tanks. The demo model (trained at 0.6–2 m/px) draws nothing smaller than one cell of its mask logits at 0.6 m/px,
(4 · 0.6)² = 5.76 m², so that is the default minimum for results that keep every match.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import shapely.geometry

from backend.cli import main
from backend.engine import Engine, SegmentJob
from backend.loading import load_predictor
from backend.protocol import ProtocolError, Segment, Window, decode, encode
from backend.raster.resolution import default_min_area_m2

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "models" / "demo-synthetic.safetensors"
PIXELS = (336, 280, 160, 112)  # col, row, width, height: the sample's grey tank (label 5) and a small building
FINE = 0.25  # m/px: twice as fine as the sample's 0.5 m
TANKS = "all storage tanks"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_predictor(checkpoint=str(DEMO), device="cpu"))


def _areas_and_shapes(geojson: str) -> list[tuple[float, shapely.Geometry]]:
    features = json.loads(Path(geojson).read_text(encoding="utf-8"))["features"]
    return [(f["properties"]["area_m2"], shapely.geometry.shape(f["geometry"])) for f in features]


def _find_all(engine: Engine, sample_tif: Path, out: Path, **fields) -> list[tuple[float, shapely.Geometry]]:
    out.mkdir()
    result = engine.run(SegmentJob(raster=str(sample_tif), phrases=(TANKS,), output_dir=str(out), mode="find-all",
                                   window=Window(pixels=PIXELS), **fields))
    return _areas_and_shapes(result.outputs["geojson"])


def test_the_default_is_one_mask_cell_at_the_finest_training_resolution() -> None:
    assert default_min_area_m2((0.6, 2.0)) == pytest.approx(5.76)
    assert default_min_area_m2((2.0, 0.6)) == pytest.approx(5.76)
    assert default_min_area_m2(None) is None


def test_find_all_finer_than_the_raster_drops_the_specks_and_keeps_the_objects(engine, sample_tif, tmp_path) -> None:
    minimum = default_min_area_m2(engine.predictor.meta.gsd_range_m)
    everything = _find_all(engine, sample_tif, tmp_path / "all", resolution=FINE, min_area_m2=0)
    assert any(area < minimum for area, _ in everything), "the upsampled view no longer makes specks: test moot"
    kept = _find_all(engine, sample_tif, tmp_path / "fine", resolution=FINE)
    native = _find_all(engine, sample_tif, tmp_path / "native", resolution=None)
    assert kept and all(area >= minimum for area, _ in kept), sorted(area for area, _ in kept)
    assert sorted(a for a, _ in kept) == pytest.approx(sorted(a for a, _ in everything if a >= minimum))
    objects = [shape for area, shape in native if area >= minimum]
    assert objects, "native resolution found no tank"
    for shape in objects:  # every object found at the native resolution is still found when reading finer
        assert any(shape.intersects(k) for _, k in kept), shape.wkt


def test_an_explicit_minimum_replaces_the_default_and_every_match_uses_the_default(engine, sample_tif,
                                                                                  tmp_path) -> None:
    large = _find_all(engine, sample_tif, tmp_path / "large", resolution=FINE, min_area_m2=20.0)
    assert large and all(area >= 20.0 for area, _ in large)
    out = tmp_path / "view"
    out.mkdir()
    result = engine.run(SegmentJob(raster=str(sample_tif), phrases=(TANKS,), output_dir=str(out), resolution=FINE,
                                   window=Window(pixels=PIXELS), all_matches=True))
    minimum = default_min_area_m2(engine.predictor.meta.gsd_range_m)
    assert all(area >= minimum for area, _ in _areas_and_shapes(result.outputs["geojson"]))


def test_the_cli_min_area_is_in_square_metres(sample_tif, tmp_path) -> None:
    output = tmp_path / "tanks.gpkg"
    code = main(["segment", str(sample_tif), TANKS, "--find-all", "--resolution", str(FINE),
                 f"--pixels={','.join(map(str, PIXELS))}", "--min-area", "10", "-o", str(output), "--device", "cpu"])
    assert code == 0
    areas = [area for area, _ in _areas_and_shapes(str(output.with_suffix(".geojson")))]
    assert areas and min(areas) >= 10.0


def test_a_negative_or_infinite_minimum_is_refused_where_it_enters(engine, sample_tif, tmp_path, capsys) -> None:
    with pytest.raises(ProtocolError, match="min_area_m2"):
        Segment(id="1", raster="r.tif", phrases=("x",), output_dir="o", min_area_m2=-1.0)
    line = encode(Segment(id="1", raster="r.tif", phrases=("x",), output_dir="o", min_area_m2=12.5))
    assert decode(line).min_area_m2 == 12.5
    from backend.errors import BackendError

    with pytest.raises(BackendError, match="minimum area") as refused:
        engine.run(SegmentJob(raster=str(sample_tif), phrases=(TANKS,), output_dir=str(tmp_path),
                              min_area_m2=float("inf")))
    assert refused.value.code == "bad_request"
    assert not list(tmp_path.glob("segmentation.*"))
    with pytest.raises(SystemExit):
        main(["segment", str(sample_tif), TANKS, "--min-area", "nan", "-o", str(tmp_path / "x.gpkg")])
    assert "--min-area: expected a number of square metres >= 0" in capsys.readouterr().err
