"""DistributedDataParallel over 2 CPU processes (gloo) keeps the ranks' trainable weights identical.

BatchNorm running statistics are per rank on CPU (SyncBatchNorm needs CUDA; rank 0's are checkpointed), so the
comparison covers the parameters DDP synchronises.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from conftest import tiny_config
from safetensors.torch import load_file, save_file

from training.train import build_train_module, train, trainable_params


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data_root: str, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size)})
    torch.set_num_threads(1)
    cfg = tiny_config(Path(data_root), Path(out) / "run", batch_size=1, max_steps=2, checkpoint_every=0)
    result = train(cfg)
    weights = {k: v.detach().contiguous() for k, v in trainable_params(result.module).items()}
    save_file(weights, str(Path(out) / f"rank{rank}.safetensors"))


def test_two_gloo_ranks_end_with_identical_weights(synthetic_set, tmp_path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(synthetic_set), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    initial = trainable_params(build_train_module(tiny_config(synthetic_set, tmp_path / "x")))
    assert rank0.keys() == rank1.keys() == initial.keys()
    moved = 0
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        moved += int(not torch.equal(rank0[name], initial[name].detach()))
    assert moved > 0
    assert (tmp_path / "run" / "checkpoints" / "model_final.safetensors").is_file()  # rank 0 wrote it
