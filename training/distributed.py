"""Process-group setup for ``torchrun`` (DistributedDataParallel); a single process when not launched by it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _libuv_store_available() -> bool:
    """Whether this torch build's TCPStore has its libuv backend: the rendezvous's default since torch 2.4, but
    distribution builds (Debian's python3-torch) leave it out."""
    try:
        dist.TCPStore("127.0.0.1", 0, world_size=1, is_master=True, use_libuv=True, wait_for_workers=False)
    except RuntimeError:
        return False
    return True


def setup_distributed() -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT): NCCL on CUDA, gloo on CPU. Without those variables, a single process on the first GPU
    or the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        if "USE_LIBUV" not in os.environ and not _libuv_store_available():
            os.environ["USE_LIBUV"] = "0"  # the rendezvous would ask for the libuv store and fail
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistInfo(rank=dist.get_rank() if world_size > 1 else 0, world_size=world_size, device=device)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
