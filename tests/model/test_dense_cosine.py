"""The grid-resolution cosine equals upsample → normalise → cosine, in value and in gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.model.prompter.dense_cosine import upsampled_cosine


def _literal(x: torch.Tensor, t: torch.Tensor, size: int) -> torch.Tensor:
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
    return torch.einsum("bchw,bc->bhw", F.normalize(up, dim=1), F.normalize(t, dim=-1))


@pytest.mark.parametrize(("b", "c", "g", "size"), [(2, 32, 8, 64), (1, 64, 27, 256), (3, 8, 2, 9), (1, 16, 5, 5)])
def test_matches_the_literal_computation(b: int, c: int, g: int, size: int) -> None:
    gen = torch.Generator().manual_seed(g)
    x = torch.randn(b, c, g, g, generator=gen, requires_grad=True)
    t = torch.randn(b, c, generator=gen, requires_grad=True)
    ours = upsampled_cosine(x, t, size)
    literal = _literal(x, t, size)
    torch.testing.assert_close(ours, literal, atol=2e-6, rtol=1e-5)
    weights = torch.randn(literal.shape, generator=gen)
    grads_ours = torch.autograd.grad((ours * weights).sum(), (x, t))
    grads_literal = torch.autograd.grad((literal * weights).sum(), (x, t))
    for a, e in zip(grads_ours, grads_literal, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-4)


def test_rejects_a_single_cell_grid() -> None:
    with pytest.raises(ValueError, match="2×2"):
        upsampled_cosine(torch.randn(1, 4, 1, 1), torch.randn(1, 4), 8)
