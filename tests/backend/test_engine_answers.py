"""The engine reads views at the checkpoint's training resolution ("auto") and answers a referring phrase with one
object: real tiny model (random init, CPU), real GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import torch
from affine import Affine
from rasters import write_geotiff

from backend.engine import Engine, SegmentJob
from backend.errors import BackendError
from backend.model.build import build_model
from backend.model.checkpoint.io import CheckpointMeta
from backend.model.config import load_config
from backend.predictor import ReferringPredictor

TRAINED_AT = CheckpointMeta(title="test", gsd_range_m=(0.8, 1.2))  # metres per pixel at the model input


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_config("tiny")).eval()  # input size 256


def predictor_with(model, meta: CheckpointMeta | None) -> ReferringPredictor:
    """The real predictor; ``meta`` stands in for a checkpoint sidecar's (the tiny config has none)."""
    predictor = ReferringPredictor(model, device="cpu")
    if meta is not None:
        predictor.meta = meta
    return predictor


def scene(tmp_path, side: int, pixel_m: float = 0.5):
    data = (np.random.default_rng(side).random((3, side, side)) * 200).astype(np.uint8)
    return write_geotiff(tmp_path / f"scene{side}.tif", data,
                         transform=Affine(pixel_m, 0, 500000.0, 0, -pixel_m, 4000000.0))


def run(predictor, raster, tmp_path, name: str, **kwargs):
    kwargs = {"refine": "none", **kwargs}
    return Engine(predictor).run(SegmentJob(raster=str(raster), phrases=("the white tank",),
                                            output_dir=str(tmp_path), output_name=name, **kwargs))


@pytest.mark.parametrize(("side", "mode", "expected"), [
    (512, "view", 1.0),        # a 256 m view seen at the 256 px input: 1.0 m/px, inside [0.8, 1.2]
    (1024, "view", 1.2),       # a 512 m view would be 2 m/px: the coarsest trained resolution, then refined
    (200, "view", 0.8),        # a 100 m view would be 0.39 m/px: the finest trained resolution
    (512, "find-all", 0.8),    # tiles at the native 0.5 m, clamped into the range
])
def test_auto_reads_at_the_checkpoint_training_resolution(model, tmp_path, side, mode, expected):
    result = run(predictor_with(model, TRAINED_AT), scene(tmp_path, side), tmp_path, f"{mode}{side}", mode=mode)
    # make_view rounds the view to whole pixels: 512 m / 1.2 = 426.7 → 427 px of 1.199 m.
    assert result.resolution_used == pytest.approx(expected, rel=5e-3)
    assert result.resolution_note == f"{expected:.3g} m/px (automatic: the model was trained at 0.8–1.2 m/px)"
    assert pyogrio.read_info(result.outputs["gpkg"])["crs"] == "EPSG:32633"


def test_auto_is_native_without_a_recorded_range_and_explicit_values_are_kept(model, tmp_path):
    raster = scene(tmp_path, 200)
    bare = predictor_with(model, None)
    assert bare.meta.gsd_range_m is None
    result = run(bare, raster, tmp_path, "auto")
    assert result.resolution_used == 0.5 and "native" in result.resolution_note
    assert "no training resolution" in result.resolution_note
    trained = predictor_with(model, TRAINED_AT)
    assert run(trained, raster, tmp_path, "native", resolution=None).resolution_used == 0.5
    result = run(trained, raster, tmp_path, "given", resolution=0.625)
    assert result.resolution_used == 0.625 and result.resolution_note == "0.625 m/px (requested)"


@pytest.mark.parametrize("resolution", [0.0, -1.0, float("nan"), "fine", True])
def test_unusable_resolutions_are_refused_before_any_model_work(model, tmp_path, resolution):
    with pytest.raises(BackendError) as info:
        run(predictor_with(model, TRAINED_AT), scene(tmp_path, 64), tmp_path, "bad", resolution=resolution)
    assert info.value.code == "bad_request" and "resolution" in info.value.message
    assert not list(tmp_path.glob("bad.*"))


class TwoBlobPredictor(ReferringPredictor):
    """The real predictor (real encoders run), whose probabilities are then replaced by two separated blobs.

    The random-init tiny model's masks are arbitrary, so the mask is scripted to test what the engine does with
    it: blob A (top left, 2/10 of the side square) has probability 0.9, blob B (bottom right, ``side_b``/10 of the
    side square) ``second``.
    """

    def __init__(self, model, second: float, side_b: int = 2):
        super().__init__(model, device="cpu")
        self.second, self.side_b = second, side_b

    def predict(self, text, with_prompts=False, rank=True):
        prediction = super().predict(text, with_prompts=with_prompts, rank=rank)
        n, h, w = prediction.probs.shape
        probs = np.zeros((n, h, w), np.float32)
        probs[:, h // 10:3 * h // 10, w // 10:3 * w // 10] = 0.9
        probs[:, 6 * h // 10:(6 + self.side_b) * h // 10, 6 * w // 10:(6 + self.side_b) * w // 10] = self.second
        prediction.probs = probs
        return prediction


@pytest.mark.parametrize(("second", "default_count"), [(0.6, 1), (0.89, 2), (0.85, 1)])
def test_view_mode_answers_with_the_best_component_unless_all_matches(model, tmp_path, second, default_count):
    # Equal areas: 0.89 holds ≥ 0.97 × A's mass at ≥ 0.85, kept; 0.85 (close, but less mass) and 0.6 are not.
    raster = scene(tmp_path, 200)
    predictor = TwoBlobPredictor(model, second)
    one = run(predictor, raster, tmp_path, "default", resolution=None)
    both = run(predictor, raster, tmp_path, "all", resolution=None, all_matches=True)
    assert (one.phrases[0].count, both.phrases[0].count) == (default_count, 2)
    _, _, geometry, fields = pyogrio.raw.read(one.outputs["gpkg"])
    assert fields[1][0] == pytest.approx(0.9)  # the best blob comes first, with its score
    find_all = run(predictor, raster, tmp_path, "find", resolution=None, mode="find-all")
    assert find_all.phrases[0].count == 2  # find-all keeps every instance


def test_the_answer_is_the_component_with_the_most_probability_mass(model, tmp_path):
    # B: 0.7 over 2.25× A's area holds 1.75× A's mass: the model put more of its belief there than on A (0.9).
    raster = scene(tmp_path, 200)
    one = run(TwoBlobPredictor(model, 0.7, side_b=3), raster, tmp_path, "mass", resolution=None)
    assert one.phrases[0].count == 1
    _, _, _, fields = pyogrio.raw.read(one.outputs["gpkg"])
    assert fields[1][0] == pytest.approx(0.7)
