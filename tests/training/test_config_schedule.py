"""YAML configs parse strictly; the LR schedule follows the paper's warm-up/constant/cosine shape."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training.config import LossConfig, ScheduleConfig, config_from_dict, load_train_config
from training.schedule import lr_factor

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["tiny", "rrsisd", "refsegrs", "risbench"])
def test_shipped_configs_parse(name: str) -> None:
    cfg = load_train_config(CONFIGS / f"{name}.yaml")
    assert cfg.data.format in ("jsonl", name)
    assert load_train_config(CONFIGS / f"{name}.yaml", max_steps=3).max_steps == 3


def test_paper_settings_per_dataset() -> None:
    rrsisd, refsegrs = load_train_config(CONFIGS / "rrsisd.yaml"), load_train_config(CONFIGS / "refsegrs.yaml")
    assert (rrsisd.lr, rrsisd.epochs, rrsisd.schedule.cosine_t_max_epochs) == (1e-4, 300, 390)
    assert (refsegrs.lr, refsegrs.epochs, refsegrs.schedule.cosine_t_max_epochs) == (2e-4, 600, 1080)
    assert rrsisd.batch_size == 8 and rrsisd.weight_decay == 0.05 and rrsisd.grad_clip == 3.0


def test_unknown_keys_are_named(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model: tiny\noutput_dir: x\ndata: {format: jsonl, root: d}\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_train_config(path)


def test_loss_weights_default_to_the_paper_and_parse_strictly(tmp_path) -> None:
    base = "model: tiny\noutput_dir: x\ndata: {format: jsonl, root: d}\n"
    path = tmp_path / "loss.yaml"
    path.write_text(base)
    assert load_train_config(path).loss == LossConfig(bce=5.0, dice=5.0, decorrelation=0.5, contrastive=0.5,
                                                      distractor=0.0)
    path.write_text(base + "loss: {distractor: 2.0}\n")
    cfg = load_train_config(path)
    assert cfg.loss.distractor == 2.0 and cfg.loss.bce == 5.0
    assert config_from_dict(cfg.to_dict()) == cfg
    path.write_text(base + "loss: {focal: 1.0}\n")
    with pytest.raises(ValueError, match="focal"):
        load_train_config(path)


def test_schedule_shape_in_iterations() -> None:
    cfg = ScheduleConfig()  # the RRSIS-D schedule
    ipe = 10
    assert lr_factor(0, ipe, cfg) == pytest.approx(0.01)
    assert lr_factor(25, ipe, cfg) == pytest.approx(0.01 + 0.99 * 25 / 50)  # half-way through warm-up
    assert lr_factor(50, ipe, cfg) == 1.0 and lr_factor(299, ipe, cfg) == 1.0
    mid = 300 + 1950  # half of T_max = 390 epochs after the cosine starts
    assert lr_factor(mid, ipe, cfg) == pytest.approx(0.01 + 0.99 * 0.5)
    end = 0.01 + 0.99 * (1 + math.cos(math.pi * 270 / 390)) / 2
    assert lr_factor(3000, ipe, cfg) == pytest.approx(end) and lr_factor(9999, ipe, cfg) == pytest.approx(end)
    assert 0.2 < end < 0.25  # METHOD.md: the cosine ends near 0.22× base, not at eta_min
