"""The resumable training state: trained weights (parameters and BatchNorm statistics), AdamW state, step
counters and the RNG.

Stored as two files, never pickled: ``{prefix}.safetensors`` (every tensor) and ``{prefix}.json`` (step,
epoch, the optimizer's param groups and non-tensor values). ``last.json`` in the checkpoint folder names the
newest complete state; it is written last and atomically, so a crash mid-save leaves the previous one valid.
The LR schedule is a pure function of the step (``training.schedule``), so it needs no state of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

LAST = "last.json"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_training_state(prefix: Path, *, step: int, epoch: int, weights: Mapping[str, torch.Tensor],
                        optimizer: torch.optim.Optimizer) -> None:
    """Write ``{prefix}.safetensors`` + ``{prefix}.json`` and point ``last.json`` beside them at it.

    Args:
        prefix: path without suffix, e.g. ``run/checkpoints/state_000100``.
        step: optimizer steps taken; epoch: the epoch the next step belongs to.
        weights: what training changes, by state-dict name: trainable parameters and the buffers of
            trained modules (BatchNorm statistics).
        optimizer: the optimizer whose ``state_dict`` to store.
    """
    optim = optimizer.state_dict()
    tensors = {f"weight.{name}": t.detach().contiguous().cpu() for name, t in weights.items()}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in optim["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"step": step, "epoch": epoch, "param_groups": optim["param_groups"], "optim_scalars": scalars}
    tmp = prefix.with_name(prefix.name + ".safetensors.tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, prefix.with_suffix(".safetensors"))
    _atomic_write_text(prefix.with_suffix(".json"), json.dumps(meta))
    _atomic_write_text(prefix.parent / LAST, json.dumps({"state": prefix.name, "step": step}))


def latest_state(checkpoint_dir: Path) -> Path | None:
    """The prefix of the newest complete state in ``checkpoint_dir``, or None if there is none."""
    pointer = checkpoint_dir / LAST
    if not pointer.is_file():
        return None
    return checkpoint_dir / json.loads(pointer.read_text(encoding="utf-8"))["state"]


def load_training_state(prefix: Path, *, weights: Mapping[str, torch.Tensor],
                        optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Restore weights, optimizer and RNG saved by ``save_training_state``.

    Args:
        prefix: the state's path without suffix.
        weights: the live tensors by name, as given to ``save_training_state`` (copied into in place; a
            module's ``state_dict()`` shares storage with it).
        optimizer: the optimizer to restore.

    Returns:
        (step, epoch).
    """
    tensors = load_file(str(prefix.with_suffix(".safetensors")))
    meta = json.loads(prefix.with_suffix(".json").read_text(encoding="utf-8"))
    missing = [name for name in weights if f"weight.{name}" not in tensors]
    if missing:
        raise ValueError(f"training state {prefix} lacks {len(missing)} trainable tensors (e.g. {missing[0]}); "
                         "it belongs to a different model config — start a new output_dir")
    with torch.no_grad():
        for name, live in weights.items():
            live.copy_(tensors[f"weight.{name}"])
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["optim_scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return int(meta["step"]), int(meta["epoch"])
