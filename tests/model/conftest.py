"""Fixtures for the model tests: tiny configs of the real classes, CPU, offline, random init."""

from __future__ import annotations

import pytest
import torch

from backend.model import build_model, load_config

TEXTS = ["a red building", "the large white storage tank near the river in the top left of the image"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models are fastest single-threaded; intra-op threads only contend on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def texts() -> list[str]:
    """Two referring expressions of different lengths."""
    return list(TEXTS)


@pytest.fixture(params=["tiny", "tiny-rsrefseg"])
def tiny_name(request: pytest.FixtureRequest) -> str:
    """Both architectures' tiny configs."""
    return request.param


@pytest.fixture
def tiny_model(tiny_name: str) -> torch.nn.Module:
    return build_model(load_config(tiny_name))


@pytest.fixture
def images() -> torch.Tensor:
    """Two 256² images in [0, 1] (the tiny configs' input size)."""
    return torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
