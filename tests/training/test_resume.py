"""A run that "crashes" and is resumed from the command line ends where the uninterrupted run ends."""

from __future__ import annotations

import json

import torch
import yaml
from conftest import tiny_config
from safetensors.torch import load_file

from backend.model.checkpoint.io import load_model
from training.train import main as train_main
from training.train import resumable_weights, train


def test_resume_after_a_crash_matches_the_uninterrupted_run(synthetic_set, tmp_path) -> None:
    settings = {"batch_size": 2, "max_steps": 3, "checkpoint_every": 1}
    straight = train(tiny_config(synthetic_set, tmp_path / "straight", **settings))

    crashed_cfg = tiny_config(synthetic_set, tmp_path / "crashed", **settings)
    first = train(crashed_cfg, stop_after=2)  # mid-epoch: 8 steps per epoch
    assert first.checkpoint is None and len(first.losses) == 2
    assert first.losses == straight.losses[:2]
    checkpoints = tmp_path / "crashed" / "checkpoints"
    assert json.loads((checkpoints / "last.json").read_text())["step"] == 2
    assert len(list(checkpoints.glob("state_*.json"))) == 2  # pruned to the newest two

    config_file = tmp_path / "crashed.yaml"
    config_file.write_text(yaml.safe_dump(crashed_cfg.to_dict()))
    train_main(["--config", str(config_file), "--resume"])
    pointer = json.loads((checkpoints / "last.json").read_text())
    assert pointer["step"] == 3
    resumed = load_file(str(checkpoints / f"{pointer['state']}.safetensors"))
    expected = resumable_weights(straight.module)
    at_crash = resumable_weights(first.module)
    changed = 0
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[f"weight.{name}"], tensor, rtol=1e-5, atol=1e-6, msg=name)
        changed += int(not torch.equal(tensor, at_crash[name]))
    assert changed > 0  # step 3 moved the weights: the match is not the crash state's
    final = load_model(checkpoints / "model_final.safetensors").state_dict()
    for name, tensor in straight.module.model.state_dict().items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
