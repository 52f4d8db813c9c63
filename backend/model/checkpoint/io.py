"""Checkpoints: ``save_checkpoint`` and the strict ``load_model``.

Our checkpoints are ``.safetensors`` (never pickles) plus a sidecar ``.json`` with the model config, the
format version and the base CLIP/SAM weight files the model was built on (name and SHA-256). Key renames,
if a checkpoint layout ever changes, belong in this file. Base weights are read by ``base_weights.py``; the
sidecar is checked by ``checkpoint/sidecar.py`` (and against the config stored in the file, ``stored_config.py``) and
the weight files by ``weight_io/files.py`` before anything is built, so a damaged, truncated, edited or pickled file
fails with a "checkpoint" or "weights" error naming it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from backend.errors import BackendError
from backend.files.scratch import create_scratch

from ..build import build_model
from ..config import config_from_dict
from ..device import LOW_PRECISION, low_precision_keys, select_device
from ..weight_io.base_weights import file_sha256
from ..weight_io.files import TORCH_DTYPES, check_safetensors, kind_of, map_safetensors, read_safetensors
from ..weight_io.safetensors_header import SafetensorsHeader
from ..weight_io.state_check import SHOWN, key_problems
from .sidecar import FORMAT, FORMAT_VERSION, read_sidecar
from .stored_config import check_stored_config, stored_metadata

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointMeta", "load_model", "read_checkpoint_meta", "save_checkpoint",
           "trained_state_keys"]


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
    fd, tmp = create_scratch(path.parent, prefix=f".{path.name}.")
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        write(tmp)
        # safetensors' save_file replaces the file with a private (0600) one: give back the umask's mode.
        os.chmod(tmp, mode)
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
    # No copy of the whole state: contiguous CPU tensors are written as they are (bf16 frozen weights stay bf16).
    tensors = {k: state[k].detach().to("cpu").contiguous() for k in keys}
    meta = meta or getattr(model, "meta", None) or CheckpointMeta()
    sidecar_data = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": model.config.arch,
                    "include_base": include_base, "base_weights": model.base_weights,
                    "config": model.config.to_dict(), "meta": meta.to_dict()}
    sidecar = path.with_suffix(".json")
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=stored_metadata(model.config)))
    _atomic_write(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(sidecar_data, indent=2), encoding="utf-8"))
    return sidecar


def _require_safetensors(path: Path) -> None:
    """Refuse anything that is not a safetensors file, by its first bytes, without unpickling it."""
    kind = kind_of(path)
    if kind != "safetensors":
        what = {"zip": "a PyTorch zip archive (pickle)", "pickle": "a pickle"}.get(kind, "not a safetensors file")
        raise BackendError("checkpoint", f"{path} is {what}; RSRefSeg checkpoints are .safetensors files",
                           "use a checkpoint written by training (save_checkpoint); pickle files are never loaded, "
                           "so nothing in this one ran")


def read_checkpoint_meta(checkpoint: str | Path) -> CheckpointMeta:
    """The ``meta`` of a checkpoint's sidecar (empty when the sidecar has none), without loading weights.

    Raises:
        BackendError("checkpoint"): the sidecar is missing or malformed (``checkpoint.sidecar.read_sidecar``).
    """
    return CheckpointMeta.from_dict(read_sidecar(Path(checkpoint)).get("meta", {}))


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
    return given  # build_model checks the file's content before anything reads it


def _build(sidecar: dict[str, Any], path: Path, clip_file: str | Path | None,
           sam_file: str | Path | None, empty: bool = False) -> nn.Module:
    """The model the sidecar describes (``empty``: on the meta device, weights to be assigned); a config that
    passes the sidecar's checks but still cannot be built (inconsistent sizes) becomes a "checkpoint" error naming
    the sidecar."""
    try:
        config = config_from_dict(sidecar["config"])
        if empty:
            with torch.device("meta"):
                return build_model(config)
        return build_model(config, clip_weights=clip_file, sam_weights=sam_file)
    except (ValueError, TypeError, KeyError, IndexError, AssertionError, ZeroDivisionError, RuntimeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
            raise
        raise BackendError("checkpoint", f"{path.with_suffix('.json')} describes a model that cannot be built "
                                         f"({type(exc).__name__}: {exc})",
                           "restore the .json written beside the checkpoint by training") from exc


def _check_header(header: SafetensorsHeader, reference: dict[str, torch.Tensor], expected: list[str],
                  name: str) -> None:
    """Compare the file's header (names, shapes, dtypes) with the model's state dict before any tensor is read: an
    8 GiB file that does not fit fails in milliseconds, not after reading it.

    Args:
        header: the checkpoint's checked header.
        reference: the model's state dict (meta tensors are enough: only shapes and dtypes are looked at).
        expected: the keys the file must hold.
        name: the file name shown.
    """
    described = {key: torch.empty(entry.shape, device="meta") for key, entry in header.tensors.items()}
    problems = key_problems(described, reference, expected)
    dtypes = sorted(f"{key} {entry.dtype} != {str(reference[key].dtype).removeprefix('torch.')}"
                    for key, entry in header.tensors.items() if key in reference and key in expected
                    and not _dtype_fits(entry.dtype, reference[key].dtype))
    if dtypes:
        problems.append("wrong dtypes: " + ", ".join(dtypes[:SHOWN]) + (
            f" … and {len(dtypes) - SHOWN} more" if len(dtypes) > SHOWN else ""))
    if problems:
        raise BackendError("checkpoint", f"{name} does not match its config; " + "; ".join(problems),
                           "use the checkpoint together with the .json written beside it")


def _dtype_fits(stored: str, wanted: torch.dtype) -> bool:
    """Floating tensors may be stored in any float precision we load (fp32, bf16, fp16); others exactly."""
    dtype = TORCH_DTYPES.get(stored)
    if wanted.is_floating_point:
        return dtype in (torch.float32, torch.bfloat16, torch.float16)
    return dtype == wanted


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
    header = check_safetensors(path, "checkpoint")
    sidecar = read_sidecar(path)
    # Names, shapes and dtypes first, against the model built empty (no memory, no weights), before the base
    # weights are hashed or any tensor is read.
    empty = _build(sidecar, path, None, None, empty=True)
    check_stored_config(header.metadata, empty.config, path.with_suffix(".json"), path)
    reference = empty.state_dict()
    trained = trained_state_keys(empty)
    _check_header(header, reference, list(reference) if sidecar["include_base"] else trained, path.name)
    if sidecar["include_base"]:
        # The empty model gets the file's tensors, memory-mapped: no random init, no second copy. Frozen matmul
        # weights and embedding tables keep the file's dtype (bf16 as released, or fp32 from an older file whose
        # LoRA was merged); trained tensors and the small rest (norms, biases, buffers) are fp32.
        model = empty
        state = map_safetensors(path, header, "checkpoint")
        keep = low_precision_keys(model) - set(trained)
        state = {k: v.float() if k not in keep and v.dtype in LOW_PRECISION else v for k, v in state.items()}
        model.load_state_dict(state, strict=True, assign=True)
    else:
        clip_file = _verified_base("clip", sidecar["base_weights"]["clip"], clip_weights)
        sam_file = _verified_base("sam", sidecar["base_weights"]["sam"], sam_weights)
        model = _build(sidecar, path, clip_file, sam_file)
        model.load_state_dict(read_safetensors(path, "checkpoint"), strict=False)
    model.base_weights = sidecar["base_weights"]
    model.meta = CheckpointMeta.from_dict(sidecar.get("meta", {}))
    return model.to(select_device(device or "cpu")).eval()
