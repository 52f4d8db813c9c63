"""Shared fixtures: a small synthetic referring set and a tiny training config pointing at it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training.config import TrainConfig, load_train_config
from training.synthetic import write_split

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run these tests on one intra-op thread: on a small shared CPU, two OpenMP threads competing with other
    processes slow the tiny model's steps down ~25× (measured: 44 s vs 1.6 s for three steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    """16 train and 6 val records of 128 px scenes."""
    root = tmp_path_factory.mktemp("synthetic")
    write_split(root, "train", 16, 128, seed=0)
    write_split(root, "val", 6, 128, seed=0)
    return root


def tiny_config(data_root: Path, output_dir: Path, val_split: str | None = None, **overrides) -> TrainConfig:
    """configs/tiny.yaml on ``data_root`` with single-process data loading; no validation unless a
    ``val_split`` and ``val_every_epochs`` are given."""
    cfg = load_train_config(CONFIGS / "tiny.yaml", output_dir=str(output_dir))
    data = replace(cfg.data, root=str(data_root), num_workers=0, val_split=val_split)
    return replace(cfg, data=data, **{"val_every_epochs": 0, **overrides})
