"""The engine with the real tiny model (random init, CPU): view mode, find-all, cache reuse, cancel, refusals.

With random weights the masks are arbitrary, so the tests check what the engine controls: which images are
encoded, which tiles are refined, where results are written, and what is left on disk.
"""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import shapely
import torch
from affine import Affine
from rasters import write_geotiff

from backend.engine import Engine, SegmentJob
from backend.errors import BackendError
from backend.model.build import build_model
from backend.model.config import load_config
from backend.passes import REFINE_MARGIN_FRACTION, REFINE_MARGIN_MIN_PX
from backend.predictor import ReferringPredictor
from backend.protocol import Window
from backend.raster.tiling import tile_grid

QUARTER = Window(pixels=(0, 0, 256, 256))  # a 256² view: 9 tiles of 128 px with 16 px overlap


class CountingPredictor(ReferringPredictor):
    """The real predictor, recording the keys it is asked to encode and the coarse probabilities."""

    def __init__(self, model):
        super().__init__(model, device="cpu")
        self.keys: list = []
        self.texts: list[list[str]] = []
        self.texts_probs: list[np.ndarray] = []
        self.ranked: list[bool] = []  # whether each predict call let the model's ranker choose
        self.box_calls = 0

    def set_image(self, image, image_key=None):
        self.keys.append(image_key)
        return super().set_image(image, image_key=image_key)

    def predict(self, texts, with_prompts=False, rank=True):
        prediction = super().predict(texts, with_prompts=with_prompts, rank=rank)
        self.ranked.append(rank)
        self.texts.append(list(texts))
        self.texts_probs.append(np.asarray(prediction.probs))
        return prediction

    def predict_with_box(self, box_xyxy, mask_prior=None):
        self.box_calls += 1
        return super().predict_with_box(box_xyxy, mask_prior=mask_prior)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_config("tiny")).eval()


@pytest.fixture
def predictor(model):
    return CountingPredictor(model)


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(1)
    data = (rng.random((3, 512, 512)) * 60 + 40).astype(np.uint8)
    data[:, 200:260, 300:380] = 230
    return write_geotiff(tmp_path / "scene.tif", data)


def job(scene, tmp_path, **kwargs):
    kwargs = {"tile_size": 128, "overlap": 16, **kwargs}
    return SegmentJob(raster=str(scene), phrases=kwargs.pop("phrases", ("the white building",)),
                      output_dir=str(tmp_path), min_area_px=1, **kwargs)


def expected_refine_tiles(coarse, threshold, view_shape, tile, overlap):
    """Grid tiles touching the coarse mask's bbox grown by the margin, computed here independently."""
    rows, cols = np.nonzero(coarse > threshold)
    scale = view_shape[0] / coarse.shape[0]
    r0, r1 = rows.min() * scale, (rows.max() + 1) * scale
    c0, c1 = cols.min() * scale, (cols.max() + 1) * scale
    margin = max(REFINE_MARGIN_MIN_PX, np.ceil(REFINE_MARGIN_FRACTION * max(r1 - r0, c1 - c0)))
    r0, r1, c0, c1 = r0 - margin, r1 + margin, c0 - margin, c1 + margin
    return [(t.row_off, t.col_off, t.height, t.width) for t in tile_grid(view_shape, tile, overlap)
            if t.row_off < r1 and r0 < t.row_off + t.height and t.col_off < c1 and c0 < t.col_off + t.width]


def _strongest_pixel_threshold(engine, predictor, scene, tmp_path):
    """Probe run; returns (coarse cache key, coarse map, a threshold keeping only its strongest pixel)."""
    engine.run(job(scene, tmp_path, output_name="probe", threshold=0.999))
    (coarse_key,) = predictor.keys[:1]
    assert coarse_key[-1] == ("coarse", (256, 256))  # the whole 512² view resampled to the 256² model input
    coarse = predictor.texts_probs[0][0]
    assert coarse.shape == (256, 256)
    predictor.keys.clear()
    predictor.texts.clear()
    predictor.box_calls = 0
    return coarse_key, coarse, float(coarse.max()) - 1e-6


@pytest.mark.parametrize("refine", ["phrase", "box"])
def test_view_mode_coarse_once_then_refines_only_under_the_coarse_box(scene, tmp_path, predictor, refine):
    engine = Engine(predictor)
    coarse_key, coarse, threshold = _strongest_pixel_threshold(engine, predictor, scene, tmp_path)
    # A threshold that keeps only the strongest coarse pixel: a small box, so few of the 25 tiles refine.
    expected = expected_refine_tiles(coarse, threshold, (512, 512), 128, 16)
    assert 0 < len(expected) < len(tile_grid((512, 512), 128, 16)) == 25
    result = engine.run(job(scene, tmp_path, output_name="refined", threshold=threshold, refine=refine))
    assert predictor.keys[0] == coarse_key  # the coarse pass on the same view reuses the cached embeddings
    assert [k[-1] for k in predictor.keys[1:]] == expected
    assert result.tiles == len(expected)
    if refine == "phrase":  # the phrase itself runs on every refined tile; SAM's box prompt is never used
        assert predictor.texts == [["the white building"]] * (1 + len(expected)) and predictor.box_calls == 0
    else:  # the text runs once (coarse); each refined tile gets one box prompt
        assert predictor.texts == [["the white building"]] and predictor.box_calls == len(expected)
    assert set(result.timings) >= {"read", "normalise", "encode", "predict", "stitch", "vectorize", "write"}
    # Nothing outside the refined tiles is ever written: every polygon lies within their union.
    _, _, geometry, _ = pyogrio.raw.read(result.outputs["gpkg"])
    assert len(geometry) == result.phrases[0].count
    transform = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)
    refined = shapely.union_all([shapely.box(*(transform @ (c, r + h)), *(transform @ (c + w, r)))
                                 for r, c, h, w in expected])
    assert all(refined.buffer(1e-6).contains(shapely.from_wkb(g)) for g in geometry)


def test_refine_none_keeps_the_upsampled_coarse_mask_without_encoding_tiles(scene, tmp_path, predictor):
    engine = Engine(predictor)
    coarse_key, coarse, _ = _strongest_pixel_threshold(engine, predictor, scene, tmp_path)
    threshold = float(np.quantile(coarse, 0.99))  # the top 1 % of the coarse map: a few hundred view pixels
    result = engine.run(job(scene, tmp_path, output_name="coarse", threshold=threshold, refine="none",
                            all_matches=True))
    assert predictor.keys == [coarse_key] and result.tiles == 0 and predictor.box_calls == 0
    _, _, geometry, _ = pyogrio.raw.read(result.outputs["gpkg"])
    area_px = sum(shapely.from_wkb(g).area for g in geometry) / 0.25  # 0.5 m pixels
    # Bilinear upsampling by 2 keeps the foreground fraction: about 1 % of the 512² view.
    assert 0.5 * 0.01 * 512**2 < area_px < 2 * 0.01 * 512**2


def test_default_tiles_are_the_model_input_at_native_resolution(scene, tmp_path, predictor):
    result = Engine(predictor).run(SegmentJob(raster=str(scene), phrases=("all buildings",), output_dir=str(tmp_path),
                                              mode="find-all"))
    grid = tile_grid((512, 512), 256, 32)  # the tiny model's 256² input, an eighth of it as overlap
    assert [k[-1] for k in predictor.keys] == [(t.row_off, t.col_off, t.height, t.width) for t in grid]
    assert result.tiles == len(grid) == 9


def test_small_view_is_one_coarse_pass_and_keys_include_window(scene, tmp_path, predictor):
    result = Engine(predictor).run(job(scene, tmp_path, window=Window(pixels=(100, 50, 200, 150))))
    assert len(predictor.keys) == 1 and result.tiles == 0
    assert predictor.ranked == [True]  # a referring answer: the model's ranker (if any) chooses
    path, _mtime, window, resolution, bands, tile = predictor.keys[0]
    assert path.endswith("scene.tif") and window == (100, 50, 200, 150) and bands == (1, 2, 3)
    assert resolution == (0.5, 0.5) and tile == ("coarse", (150, 200))


def test_find_all_encodes_each_tile_once_for_all_phrases_with_progress(scene, tmp_path, predictor):
    seen = []
    result = Engine(predictor).run(job(scene, tmp_path, mode="find-all", window=QUARTER,
                                       phrases=("all buildings", "the road")),
                                   progress=lambda fraction, stage, message: seen.append(fraction))
    grid = tile_grid((256, 256), 128, 16)
    assert len(grid) == 9
    assert predictor.ranked == [False] * 9  # find-all keeps every match on every tile
    assert [k[-1] for k in predictor.keys] == [(t.row_off, t.col_off, t.height, t.width) for t in grid]
    assert [s.query for s in result.phrases] == ["all buildings", "the road"]
    _, _, _, fields = pyogrio.raw.read(result.outputs["geojson"])
    assert set(fields[0]) <= {"all buildings", "the road"}
    assert len(fields[0]) == sum(s.count for s in result.phrases)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > len(grid)


def test_cancel_between_tiles_leaves_no_output(scene, tmp_path, predictor):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(BackendError) as info:
        Engine(predictor).run(job(scene, tmp_path, mode="find-all", window=QUARTER), should_cancel=should_cancel)
    assert info.value.code == "cancelled"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize(("kwargs", "code"), [({"phrases": ("  ",)}, "empty_query"),
                                               ({"phrases": ()}, "empty_query"),
                                               ({"bands": (1, 4, 2)}, "bad_band"),
                                               ({"window": Window(extent=(0.0, 0.0, 1.0, 1.0))}, "window_outside"),
                                               ({"mode": "everything"}, "bad_request"),
                                               ({"refine": "sharpen"}, "bad_request"),
                                               ({"threshold": 1.5}, "bad_request"),
                                               ({"tile_size": 128, "overlap": 64}, "bad_request"),
                                               ({"tile_size": None, "overlap": 200}, "bad_request")])
def test_bad_jobs_are_refused_before_any_model_work(scene, tmp_path, predictor, kwargs, code):
    with pytest.raises(BackendError) as info:
        Engine(predictor).run(job(scene, tmp_path, **kwargs))
    assert info.value.code == code and info.value.hint
    assert predictor.keys == []


def test_existing_output_is_refused_before_any_model_work(scene, tmp_path, predictor):
    (tmp_path / "segmentation.gpkg").write_bytes(b"precious")
    with pytest.raises(BackendError) as info:
        Engine(predictor).run(job(scene, tmp_path))
    assert info.value.code == "output_exists"
    assert predictor.keys == [] and (tmp_path / "segmentation.gpkg").read_bytes() == b"precious"
