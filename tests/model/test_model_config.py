"""Configs are data: every bundled JSON parses, round-trips and builds the classes it names."""

from __future__ import annotations

import json

import pytest

from backend.model import MODEL_REGISTRY, build_model, load_config
from backend.model.architectures.rsrefseg import RSRefSeg
from backend.model.architectures.rsrefseg2 import RSRefSeg2
from backend.model.config import available_configs, config_from_dict


def test_bundled_configs_parse_and_round_trip() -> None:
    names = available_configs()
    assert {"tiny", "tiny-rsrefseg", "rsrefseg2-paper", "rsrefseg2-b16", "rsrefseg-b16"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.arch in MODEL_REGISTRY
        assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_paper_config_sizes() -> None:
    cfg = load_config("rsrefseg2-paper")
    assert (cfg.input_size, cfg.mask_size, cfg.sam_grid, cfg.clip.image_size) == (1024, 256, 64, 512)
    assert (cfg.prompter.attn_dim, cfg.prompter.num_heads, cfg.prompter.num_prompts) == (512, 8, 9)


def test_load_config_by_path_and_errors(tmp_path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(load_config("tiny").to_dict()))
    assert load_config(path) == load_config("tiny")
    with pytest.raises(FileNotFoundError, match="tiny"):
        load_config("no-such-config")
    data = load_config("tiny").to_dict() | {"colour": "red"}
    with pytest.raises(ValueError, match="colour"):
        config_from_dict(data)


def test_builder_picks_architecture() -> None:
    assert type(build_model(load_config("tiny"))) is RSRefSeg2
    assert type(build_model(load_config("tiny-rsrefseg"))) is RSRefSeg


def test_random_init_is_seeded_and_leaves_global_rng_alone() -> None:
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(load_config("tiny"))
    after = torch.rand(1)
    b = build_model(load_config("tiny"))
    assert torch.equal(before, after)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
