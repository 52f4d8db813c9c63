"""Checkpoints: ``save_checkpoint`` and the strict ``load_model``.

Our checkpoints are ``.safetensors`` (never pickles) plus a sidecar ``.json`` with the model config, the
format version and the base CLIP/SAM weight files the model was built on (name and SHA-256). Key renames,
if a checkpoint layout ever changes, belong in this file. Base weights are read by ``base_weights.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from backend.errors import BackendError

from .base_weights import file_sha256
from .build import build_model
from .config import config_from_dict
from .device import select_device

FORMAT = "rsrefseg2-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CheckpointMeta:
    """What a trained checkpoint says about itself (the sidecar's optional ``meta`` object).

    Attributes:
        title: a short human name, e.g. "Demo model — synthetic scenes only".
        description: one or two sentences on what the model is for and how good it is.
        gsd_range_m: (lo, hi) ground metres per pixel at the model input that it was trained at; the engine's
            automatic resolution reads views inside this range. None: unknown (automatic = native resolution).
        dataset: the training data, e.g. "synthetic (training/synthetic.py)" or "RRSIS-D".
    """

    title: str | None = None
    description: str | None = None
    gsd_range_m: tuple[float, float] | None = None
    dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's ``meta`` object (unset fields left out)."""
        items = {"title": self.title, "description": self.description, "dataset": self.dataset,
                 "gsd_range_m": list(self.gsd_range_m) if self.gsd_range_m else None}
        return {k: v for k, v in items.items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointMeta:
        """Parse a sidecar ``meta`` object."""
        gsd = data.get("gsd_range_m")
        return cls(title=data.get("title"), description=data.get("description"), dataset=data.get("dataset"),
                   gsd_range_m=None if gsd is None else (float(gsd[0]), float(gsd[1])))


def trained_state_keys(model: nn.Module) -> list[str]:
    """State-dict keys of what training changes: trainable parameters plus the buffers (BatchNorm statistics)
    of modules that own a trainable parameter."""
    keys = [n for n, p in model.named_parameters() if p.requires_grad]
    for module_name, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            prefix = f"{module_name}." if module_name else ""
            keys += [prefix + n for n, _ in module.named_buffers(recurse=False) if n in module.state_dict()]
    return keys


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(model: nn.Module, path: str | Path, include_base: bool = False,
                    meta: CheckpointMeta | None = None) -> Path:
    """Write ``path`` (.safetensors) and its sidecar ``.json``, both atomically.

    Args:
        model: a model from ``build_model``.
        path: destination ending in ``.safetensors``.
        include_base: save the whole model (frozen base included), e.g. for the tiny demo checkpoint;
            otherwise only what training changed.
        meta: what the checkpoint says about itself (title, training resolution range, …); default: the
            model's own ``meta`` attribute if it has one.

    Returns:
        The path of the sidecar JSON.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoints are .safetensors files, got {path.name!r}")
    state = model.state_dict()
    keys = list(state) if include_base else trained_state_keys(model)
    tensors = {k: state[k].detach().to("cpu").contiguous().clone() for k in keys}
    meta = meta or getattr(model, "meta", None) or CheckpointMeta()
    sidecar_data = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": model.config.arch,
                    "include_base": include_base, "base_weights": model.base_weights,
                    "config": model.config.to_dict(), "meta": meta.to_dict()}
    sidecar = path.with_suffix(".json")
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(sidecar_data, indent=2), encoding="utf-8"))
    return sidecar


def _require_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file, by its header, without unpickling it."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    header_len = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    if not (0 < header_len <= size - 8 and head[8:9] == b"{"):
        kind = "a zip/pickle PyTorch file" if head[:2] == b"PK" or head[:1] == b"\x80" else "not safetensors"
        raise BackendError("checkpoint", f"{path.name} is {kind}; RSRefSeg checkpoints are .safetensors files",
                           "use a checkpoint written by training/save_checkpoint; pickle files are never loaded")


def _read_sidecar(path: Path) -> dict[str, Any]:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise BackendError("checkpoint", f"{sidecar.name} (the checkpoint's config) is missing",
                           "keep the .json written next to the .safetensors file")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BackendError("checkpoint", f"{sidecar.name} is not valid JSON ({exc})",
                           "restore the sidecar written by save_checkpoint") from exc
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise BackendError("checkpoint", f"{sidecar.name} is not a {FORMAT} v{FORMAT_VERSION} sidecar",
                           "re-export the checkpoint with this version of the plugin")
    return meta


def read_checkpoint_meta(checkpoint: str | Path) -> CheckpointMeta:
    """The ``meta`` of a checkpoint's sidecar (empty when the sidecar has none), without loading weights."""
    return CheckpointMeta.from_dict(_read_sidecar(Path(checkpoint)).get("meta", {}))


def _verified_base(kind: str, expected: dict[str, str] | None, given: str | Path | None) -> str | Path | None:
    """The base-weight file to build with, after checking it against the checkpoint's record."""
    arg = f"{kind}_weights"
    if expected is None:
        if given is not None:
            raise BackendError("weights", f"this checkpoint was trained on randomly initialised {kind} weights, "
                               f"but {arg}={str(given)!r} was given", f"omit {arg}")
        return None
    if given is None:
        raise BackendError("weights", f"this checkpoint needs the {kind} base weights {expected['file']}",
                           f"pass {arg}= the local path of {expected['file']} (sha256 {expected['sha256']})")
    actual = file_sha256(given)
    if actual != expected["sha256"]:
        raise BackendError("weights", f"{kind} weights {Path(given).name} have sha256 {actual}, but the checkpoint "
                           f"expects {expected['sha256']} ({expected['file']})",
                           f"pass the {kind} weights the model was trained on")
    return given


def _check_keys(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], expected: list[str],
                name: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k} {tuple(state[k].shape)} != {tuple(reference[k].shape)}"
                    for k in set(state) & set(expected) if state[k].shape != reference[k].shape)
    problems = [f"{label}: {', '.join(items)}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)) if items]
    if problems:
        raise BackendError("checkpoint", f"{name} does not match its config; " + "; ".join(problems),
                           "use the checkpoint together with the .json written beside it")


def load_model(checkpoint: str | Path, clip_weights: str | Path | None = None,
               sam_weights: str | Path | None = None, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild a model from a checkpoint, strictly.

    Args:
        checkpoint: the ``.safetensors`` file (its ``.json`` sidecar beside it).
        clip_weights, sam_weights: local base-weight files, verified against the recorded SHA-256.
        device: ``select_device`` spec (None: CPU).

    Returns:
        The model in eval mode on ``device``.

    Raises:
        BackendError: "checkpoint" for unreadable/mismatched checkpoints, "weights" for base-weight problems.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise BackendError("checkpoint", f"checkpoint not found: {path}", "check the checkpoint path")
    _require_safetensors(path)
    meta = _read_sidecar(path)
    config = config_from_dict(meta["config"])
    if meta["include_base"]:
        clip_file = sam_file = None
    else:
        clip_file = _verified_base("clip", meta["base_weights"]["clip"], clip_weights)
        sam_file = _verified_base("sam", meta["base_weights"]["sam"], sam_weights)
    model = build_model(config, clip_weights=clip_file, sam_weights=sam_file)
    state = load_file(str(path))
    reference = model.state_dict()
    expected = list(reference) if meta["include_base"] else trained_state_keys(model)
    _check_keys(state, reference, expected, path.name)
    model.load_state_dict(state, strict=bool(meta["include_base"]))
    model.base_weights = meta["base_weights"]
    model.meta = CheckpointMeta.from_dict(meta.get("meta", {}))
    return model.to(select_device(device or "cpu")).eval()
