"""Checkpoint meta: title and training resolution range survive a save/load and reach the predictor."""

from __future__ import annotations

import json

from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.checkpoint.io import CheckpointMeta, read_checkpoint_meta
from backend.predictor import ReferringPredictor


def test_meta_round_trip_reaches_predictor(tmp_path) -> None:
    model = build_model(load_config("tiny"))
    meta = CheckpointMeta(title="Demo model — synthetic scenes only", description="for the sample",
                          gsd_range_m=(0.3, 2.0), dataset="synthetic")
    path = tmp_path / "m.safetensors"
    sidecar = save_checkpoint(model, path, include_base=True, meta=meta)
    assert json.loads(sidecar.read_text())["meta"]["gsd_range_m"] == [0.3, 2.0]
    assert read_checkpoint_meta(path) == meta
    predictor = ReferringPredictor(load_model(path), device="cpu")
    assert predictor.meta == meta


def test_random_init_predictor_has_empty_meta() -> None:
    predictor = ReferringPredictor(build_model(load_config("tiny")), device="cpu")
    assert predictor.meta == CheckpointMeta()
    assert predictor.meta.gsd_range_m is None
