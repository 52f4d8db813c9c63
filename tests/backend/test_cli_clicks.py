"""``python -m backend segment`` with clicks, a box and ``--probability``: the demo model on the bundled sample.

Issue 26's command-line acceptance: the phrase again with ``--exclude-point`` at the centroid of its first answer
returns an answer without that point; ``--probability`` writes a GeoTIFF in the sample's CRS whose pixels above
0.5 overlap the answer polygon. Clicks outside the area are refused before the model loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from shapely.geometry import shape

from backend.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "sample.tif"
DEMO = ["--checkpoint", str(ROOT / "resources" / "models" / "demo-synthetic.safetensors"), "--device", "cpu"]
PHRASE = "the red building at the top left"


def _answer(gpkg: Path) -> shapely.Geometry:
    features = json.loads(gpkg.with_suffix(".geojson").read_text(encoding="utf-8"))["features"]
    assert features, f"{gpkg} holds no polygon"
    return shapely.union_all([shape(f["geometry"]) for f in features])


def test_exclude_point_at_the_answers_centroid_removes_it_and_probability_overlaps(tmp_path: Path) -> None:
    first, probability = tmp_path / "first.gpkg", tmp_path / "first_probability.tif"
    assert main(["segment", str(SAMPLE), PHRASE, "-o", str(first), "--probability", str(probability), *DEMO]) == 0
    answer = _answer(first)
    with rasterio.open(probability) as src, rasterio.open(SAMPLE) as sample:
        assert src.crs == sample.crs and src.count == 1 and src.dtypes[0] == "float32" and src.nodata == -1
        values = src.read(1)
        polygon = rasterize([(answer, 1)], out_shape=values.shape, transform=src.transform).astype(bool)
    above = values > 0.5
    assert (above & polygon).sum() > 0.5 * polygon.sum()  # the polygon is where the probability is high

    centroid = answer.centroid
    assert answer.covers(centroid), "the test needs a convex-ish first answer"
    second = tmp_path / "second.gpkg"
    assert main(["segment", str(SAMPLE), PHRASE, "-o", str(second), "--exclude-point",
                 f"{centroid.x},{centroid.y}", *DEMO]) == 0
    features = json.loads(second.with_suffix(".geojson").read_text(encoding="utf-8"))["features"]
    assert not any(shape(f["geometry"]).covers(centroid) for f in features)


def test_box_and_include_point_keep_the_answer_inside_the_box(tmp_path: Path) -> None:
    first = tmp_path / "first.gpkg"
    assert main(["segment", str(SAMPLE), PHRASE, "-o", str(first), *DEMO]) == 0
    xmin, ymin, xmax, ymax = _answer(first).buffer(5).bounds
    inside = _answer(first).representative_point()
    boxed = tmp_path / "boxed.gpkg"
    assert main(["segment", str(SAMPLE), PHRASE, "-o", str(boxed), f"--box={xmin},{ymin},{xmax},{ymax}",
                 "--point", f"{inside.x},{inside.y}", *DEMO]) == 0
    answer = _answer(boxed)
    assert answer.covers(inside)
    assert answer.intersection(shapely.box(xmin, ymin, xmax, ymax)).area > 0.8 * answer.area


def test_find_all_probability_is_the_stitched_tile_map(tmp_path: Path) -> None:
    out, probability = tmp_path / "all.gpkg", tmp_path / "all_probability.tif"
    assert main(["segment", str(SAMPLE), "all red buildings", "--find-all", "-o", str(out),
                 "--probability", str(probability), *DEMO]) == 0
    with rasterio.open(probability) as src, rasterio.open(SAMPLE) as sample:
        # Read at the model's scale (0.6 m, automatic), over the same ground as the sample.
        assert src.crs == sample.crs and np.allclose(tuple(src.bounds), tuple(sample.bounds), atol=1.0)
        values = src.read(1)
    assert np.isfinite(values).all() and values.max() <= 1.0
    features = json.loads(out.with_suffix(".geojson").read_text(encoding="utf-8"))["features"]
    if features:
        with rasterio.open(probability) as src:
            polygons = rasterize([(shape(f["geometry"]), 1) for f in features], out_shape=values.shape,
                                 transform=src.transform).astype(bool)
        assert (values[polygons] > 0.5).mean() > 0.5


@pytest.mark.parametrize(("argv", "code", "words"), [
    (["--point", "1,2"], 2, "outside the area"),
    (["--box=10,10,5,5"], 2, "XMIN < XMAX"),
    (["--probability", "p.png"], 2, ".tif"),
    (["--find-all", "--point", "1,2"], 2, "one phrase"),
])
def test_bad_clicks_fail_before_the_model_loads(tmp_path: Path, capsys, monkeypatch, argv, code, words) -> None:
    # Loading the model would take seconds: the request must be refused before; the loader is never reached.
    import backend.loading

    def refuse(**_):
        raise AssertionError("the model was loaded for a bad request")
    monkeypatch.setattr(backend.loading, "load_predictor", refuse)
    monkeypatch.chdir(tmp_path)
    assert main(["segment", str(SAMPLE), PHRASE, "-o", str(tmp_path / "o.gpkg"), *argv, *DEMO]) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("error: ") and words in err[-2], err
    assert err[-1].startswith("hint: ")
    assert not (tmp_path / "o.gpkg").exists()


@pytest.mark.parametrize(("argv", "words"), [(["--exclude-point", "1,2,3"], "X,Y"), (["--point", "nan,2"], "finite")])
def test_malformed_clicks_are_usage_errors(tmp_path: Path, capsys, argv, words) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(SAMPLE), PHRASE, "-o", str(tmp_path / "o.gpkg"), *argv, *DEMO])
    assert stop.value.code == 2 and words in capsys.readouterr().err
