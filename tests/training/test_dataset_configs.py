"""The shipped dataset configs train and validate on splits their released annotations have (METHOD.md §4, §6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# datainfo/<format>_<split>.jsonl files of each released dataset: RISBench ships train and test only.
RELEASED_SPLITS = {"rrsisd": {"train", "val", "test"}, "refsegrs": {"train", "val", "test"},
                   "risbench": {"train", "test"}}


@pytest.mark.parametrize("name", sorted(RELEASED_SPLITS))
def test_train_and_validation_splits_exist_in_the_release(name: str) -> None:
    cfg = load_train_config(CONFIGS / f"{name}.yaml")
    assert cfg.data.format == name
    assert {cfg.data.train_split, cfg.data.val_split} <= RELEASED_SPLITS[name]
    assert cfg.model == "rsrefseg2-paper"
