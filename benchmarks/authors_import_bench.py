"""Conversion time and peak RSS of ``weights import-authors`` on a full-size synthetic file in the authors' layout.

``make FILE``: write random bf16 tensors of the released files' real shapes (SigLIP 2 so400m-512, SAM 2.1
Hiera-L, prompter, r = 16 LoRA; ≈2.9 GB) as ``{"state_dict": ...}`` with ``torch.save``.
``convert FILE OUT.safetensors``: convert it (run under ``/usr/bin/time -v`` for the peak RSS) and print JSON.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "model"))


def _is_norm_scale(key: str) -> bool:
    """A normalisation layer's scale (``…norm….weight``, ``…ln_….weight``, ``…layernorm….weight``)."""
    module, _, name = key.rpartition(".")
    last = module.rsplit(".", 1)[-1]
    return name == "weight" and ("norm" in last or last.startswith("ln"))


def make(path: Path) -> None:
    from authors_layout import PAPER_DIMS, authors_layout  # the tests' description of the authors' layout

    from backend.model.config import load_config

    layout = authors_layout(load_config("rsrefseg2-paper"), PAPER_DIMS, rank=16)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var") or (len(shape) == 1 and _is_norm_scale(key)):
            # A variance is positive (a negative one makes BatchNorm's output NaN) and a norm's scale is near 1, as
            # in trained weights: the forward pass then gives finite masks to compare and time.
            state[key] = (1 + 0.02 * torch.randn(shape)).abs().to(torch.bfloat16)
        else:
            state[key] = torch.randn(shape).to(torch.bfloat16) * 0.02
    torch.save({"state_dict": state}, path)
    print(json.dumps({"file": str(path), "bytes": path.stat().st_size, "tensors": len(state)}))


def convert(source: Path, dest: Path) -> None:
    from backend.model.authors import import_authors

    start = time.perf_counter()
    import_authors(source, dest)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": round(seconds, 1), "peak_rss_bytes": peak, "source_bytes": source.stat().st_size,
                      "output_bytes": dest.stat().st_size, "peak_over_source": round(peak / source.stat().st_size, 2)}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(Path(sys.argv[2]))
    else:
        convert(Path(sys.argv[2]), Path(sys.argv[3]))
