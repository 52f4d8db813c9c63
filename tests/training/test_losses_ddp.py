"""The region–text InfoNCE over 2 gloo ranks equals the single-process loss on the whole batch, on every rank.

Each rank sees the full gathered logit matrix (the authors' form); only its own features carry gradient, so its
feature gradients are the whole-batch gradients of its slice and the loss head's gradient is the whole-batch one.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.losses import RefSegLoss

WORLD, PER_RANK = 2, 2


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """clip_patch (W·B)×6×2×2, labels (W·B)×8×8 with one object cell each, q2 (W·B)×3×6."""
    gen = torch.Generator().manual_seed(0)
    n = WORLD * PER_RANK
    labels = torch.zeros(n, 8, 8, dtype=torch.int64)
    for i in range(n):
        r, c = divmod(i, 2)
        labels[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 1
    return torch.randn(n, 6, 2, 2, generator=gen), labels, torch.randn(n, 3, 6, generator=gen)


def _contrastive(clip_patch: torch.Tensor, labels: torch.Tensor, q2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The loss and the gradients of the features and the head's scale and bias."""
    clip_patch, q2 = clip_patch.clone().requires_grad_(True), q2.clone().requires_grad_(True)
    loss_fn = RefSegLoss(arch="rsrefseg2")
    loss = loss_fn.contrastive(clip_patch, labels, q2)
    loss.backward()
    return {"loss": loss.detach(), "clip_patch": clip_patch.grad, "q2": q2.grad,
            "scale": loss_fn.logit_scale2.grad, "bias": loss_fn.logit_bias2.grad}


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        clip_patch, labels, q2 = (t[part] for t in _batch())
        torch.save(_contrastive(clip_patch, labels, q2), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_each_rank_computes_the_whole_batch_infonce(tmp_path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=True)
    whole = _contrastive(*_batch())
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        torch.testing.assert_close(got["loss"], whole["loss"])
        torch.testing.assert_close(got["clip_patch"], whole["clip_patch"][part])
        torch.testing.assert_close(got["q2"], whole["q2"][part])
        torch.testing.assert_close(got["scale"], whole["scale"])
        torch.testing.assert_close(got["bias"], whole["bias"])
