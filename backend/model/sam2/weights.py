"""Meta's SAM 2.1 checkpoints (``sam2.1_hiera_*.pt``) into the image-path parts, strictly.

A ``.pt`` is read with ``torch.load(weights_only=True)`` through ``weight_io.files`` (nothing in a pickle runs) and
holds ``{"model": state}`` with SAM2Base's keys. The video-memory modules are not built here, so their keys are
skipped BY NAME; any other key the parts do not have, any key they miss and any shape that differs is an error
that names it. A flat ``.safetensors`` of the same keys is accepted too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from backend.errors import BackendError

from ..weight_io.files import kind_of, read_safetensors, read_torch_pickle
from ..weight_io.state_check import key_problems

# SAM2Base's video-memory parameters (memory attention/encoder, object pointers, temporal encodings).
MEMORY_PREFIXES = ("memory_attention.", "memory_encoder.", "obj_ptr_proj.", "obj_ptr_tpos_proj.", "mask_downsample.")
MEMORY_KEYS = ("maskmem_tpos_enc", "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial")
HINT = "pass Meta's sam2.1_hiera_*.pt matching the config's SAM 2.1 size (tiny, small, base_plus, large)"


def is_memory_key(key: str) -> bool:
    """True for keys of SAM 2's video-memory modules, which the image path does not build."""
    return key in MEMORY_KEYS or key.startswith(MEMORY_PREFIXES)


def read_sam2_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a SAM 2.1 ``.pt`` (its ``"model"`` entry) or ``.safetensors`` file.

    Raises:
        BackendError("weights"): a missing, damaged or general-pickle file (refused without running any of it),
            or a ``.pt`` without a ``"model"`` state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise BackendError("weights", f"SAM 2.1 weights file not found: {path}", HINT)
    kind = kind_of(path)
    if kind == "safetensors":
        return read_safetensors(path, "weights")
    if kind == "unknown":
        raise BackendError("weights", f"{path} is neither a PyTorch file nor a safetensors file", HINT)
    data = read_torch_pickle(path, "weights", HINT)
    state = data.get("model") if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackendError("weights", f"{path} has no 'model' state dict (not a SAM 2.1 checkpoint)", HINT)
    return state


def load_sam2_weights(parts: dict[str, nn.Module | nn.Parameter], path: str | Path) -> None:
    """Load a SAM 2.1 checkpoint into ``build_sam2_parts`` output, in place.

    Raises:
        BackendError("weights"): naming missing keys, unexpected (non-memory) keys and wrong shapes.
    """
    holder = nn.Module()  # gives the parts one state dict with the checkpoint's own key names
    for name, part in parts.items():
        setattr(holder, name, part)
    expected = holder.state_dict()
    state = {k: v for k, v in read_sam2_state(path).items() if not is_memory_key(k)}
    problems = key_problems(state, expected)
    if problems:
        raise BackendError("weights", f"SAM 2.1 weights {Path(path).name} do not fit the configured SAM 2.1 size; "
                           + "; ".join(problems), HINT)
    holder.load_state_dict(state, strict=True)
