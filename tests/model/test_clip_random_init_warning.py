"""open_clip's "No pretrained weights loaded … Model initialized randomly" warning: never printed when the weights
come from our checkpoint, still printed for a build that really is random.

The CLIP tower is a *named* open_clip model (the path the paper's and the B/16 configs take, where open_clip's
factory logs the warning), registered with open_clip's own ``add_model_config`` from the tiny config's sizes so the
build stays small. Built, saved with its base weights, loaded: real files, real open_clip, the log captured.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import open_clip
import pytest
import torch

from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.clip.encoder import RANDOM_INIT_WARNING

NAMED_TINY = "rsrefseg-test-named-tiny-clip"


@pytest.fixture(scope="module")
def named_tiny_config(tmp_path_factory):
    """The tiny config with its CLIP looked up by name in open_clip's registry (no inline ``model_cfg``)."""
    config = load_config("tiny")
    folder = tmp_path_factory.mktemp("open_clip_configs")
    (folder / f"{NAMED_TINY}.json").write_text(json.dumps(config.clip.model_cfg))
    open_clip.add_model_config(folder)
    return dataclasses.replace(config, clip=dataclasses.replace(config.clip, name=NAMED_TINY, model_cfg=None))


def _random_init_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(RANDOM_INIT_WARNING)]


def test_loading_a_checkpoint_with_its_base_weights_logs_no_random_init(named_tiny_config, tmp_path, caplog) -> None:
    model = build_model(named_tiny_config)
    path = tmp_path / "named.safetensors"
    save_checkpoint(model, path, include_base=True)
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        loaded = load_model(path)
    assert _random_init_lines(caplog) == []
    weight = "clip_encoder.model.visual.conv1.weight"
    torch.testing.assert_close(loaded.state_dict()[weight], model.state_dict()[weight])  # the file's weights
    assert not any(isinstance(f, logging.Filter) and type(f).__name__ == "_DropRandomInitWarning"
                   for f in logging.getLogger().filters)  # the filter ends with the build


def test_a_random_build_of_a_named_model_still_says_so(named_tiny_config, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        build_model(named_tiny_config)
    assert _random_init_lines(caplog) == [f"{RANDOM_INIT_WARNING} '{NAMED_TINY}'. Model initialized randomly."]
