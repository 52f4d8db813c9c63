"""End to end on a synthetic set: train the tiny config a few steps, reload the checkpoint, evaluate it."""

from __future__ import annotations

import json

import torch
from conftest import tiny_config

from backend.model.checkpoint.io import load_model
from training.config import ScheduleConfig
from training.evaluate import main as evaluate_main
from training.synthetic import write_split
from training.train import train


def test_tiny_training_learns_and_its_checkpoint_loads_and_evaluates(tmp_path) -> None:
    write_split(tmp_path / "data", "train", 2, 128, seed=1)
    write_split(tmp_path / "data", "val", 2, 128, seed=1)
    # One batch of 2 repeated: the loss on it must fall.
    schedule = ScheduleConfig(warmup_epochs=1, cosine_begin_epoch=4, cosine_end_epoch=4, cosine_t_max_epochs=4)
    cfg = tiny_config(tmp_path / "data", tmp_path / "run", val_split="val", batch_size=2, epochs=4,
                      checkpoint_every=2, val_every_epochs=2, schedule=schedule)
    result = train(cfg)
    assert len(result.losses) == 4
    assert result.losses[-1] < result.losses[0]
    assert all(torch.isfinite(torch.tensor(result.losses)))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "model_best.safetensors").is_file()  # validation ran (after epochs 2 and 4)
    assert json.loads((checkpoints / "best.json").read_text())["step"] in (2, 4)
    assert list((tmp_path / "run" / "tb").iterdir())  # TensorBoard events

    model = load_model(result.checkpoint)
    trained = result.module.model.state_dict()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, trained[name], msg=name)

    out = tmp_path / "eval.json"
    evaluate_main(["--checkpoint", str(result.checkpoint), "--data", str(tmp_path / "data"), "--split", "val",
                   "--device", "cpu", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["format"] == "jsonl" and report["model"]["n"] == 2
    assert report["all_empty"]["gIoU"] == 0.0
    assert 0.0 < report["whole_image"]["gIoU"] < 50.0
    assert set(report["model"]["per_phrase_type"]) <= {"attribute", "position", "relation"}

