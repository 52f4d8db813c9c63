"""train_base trains the random-init encoders too; the config's meta lands in every written checkpoint."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import CONFIGS, tiny_config

from backend.model.checkpoint.io import read_checkpoint_meta
from training.config import load_train_config
from training.train import build_train_module, train

META = {"title": "Demo model — synthetic scenes only", "gsd_range_m": [0.6, 2.0], "dataset": "synthetic"}


def test_train_base_makes_the_text_tower_trainable(tmp_path) -> None:
    cfg = tiny_config(tmp_path, tmp_path / "run")
    frozen = build_train_module(cfg).model
    everything = build_train_module(replace(cfg, train_base=True)).model
    text_params = [n for n, _ in everything.named_parameters() if "token_embedding" in n]
    assert text_params
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if n in text_params)
    assert all(p.requires_grad for p in everything.parameters())


def test_meta_is_written_into_the_checkpoint(synthetic_set, tmp_path) -> None:
    cfg = replace(tiny_config(synthetic_set, tmp_path / "run", batch_size=4, epochs=1, checkpoint_every=0),
                  train_base=True, meta=META, max_steps=1)
    result = train(cfg)
    meta = read_checkpoint_meta(result.checkpoint)
    assert meta.title == META["title"] and meta.gsd_range_m == (0.6, 2.0) and meta.dataset == "synthetic"
    assert all(torch.isfinite(torch.tensor(result.losses)))


def test_demo_config_parses_and_records_its_training_scale() -> None:
    cfg = load_train_config(CONFIGS / "demo.yaml")
    assert cfg.train_base and cfg.include_base
    assert cfg.meta["gsd_range_m"] == [0.6, 2.0]


@pytest.mark.parametrize("stage", ["demo-stage2.yaml", "demo-stage3.yaml", "demo-stage4.yaml", "demo-stage5.yaml",
                                   "demo-stage4-distractor.yaml"])
def test_demo_stages_start_from_a_committed_model(stage: str) -> None:
    cfg = load_train_config(CONFIGS / stage)
    assert cfg.model == "demo" and cfg.train_base and cfg.include_base
    assert cfg.meta["gsd_range_m"] == [0.6, 2.0]
    assert (CONFIGS.parent / cfg.init_from).is_file()


def test_resume_without_a_state_says_it_starts_over(synthetic_set, tmp_path, capsys) -> None:
    cfg = replace(tiny_config(synthetic_set, tmp_path / "run", batch_size=4, epochs=1, checkpoint_every=0),
                  max_steps=1)
    train(cfg, resume=True)
    assert "found no training state" in capsys.readouterr().out
