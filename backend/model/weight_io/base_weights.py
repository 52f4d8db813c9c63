"""Base (pre-trained) weights from local files: SAM checkpoints and the SHA-256 records checkpoints keep.

open_clip checkpoints are loaded by open_clip itself (``clip.encoder.create_open_clip``); SAM ``.pth`` files
are read with ``torch.load(weights_only=True)``, never unpickled freely; ``check_base_file`` refuses a damaged,
truncated or general-pickle file before any library reads it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import nn

from backend.errors import BackendError

from .files import check_weights_file, read_state_dict
from .state_check import key_problems

# SAM .pth keys that belong to segment_anything's ``Sam`` wrapper, not to its three parts.
SAM_WRAPPER_KEYS = ("pixel_mean", "pixel_std")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weight_record(path: str | Path | None) -> dict[str, str] | None:
    """{"file": name, "sha256": hex} for a base-weight file, None for random init."""
    return None if path is None else {"file": Path(path).name, "sha256": file_sha256(path)}


SAM_HINT = "pass an official segment_anything sam_vit_*.pth file (or a .safetensors of its tensors)"
CLIP_HINT = "pass an open_clip checkpoint of the configured CLIP model (.safetensors or a PyTorch state dict)"


def check_base_file(kind: str, path: str | Path) -> None:
    """Refuse a base-weight file that is missing, damaged, truncated or a general pickle, before anything reads it.

    Call it before handing a file to a library (open_clip reads CLIP weights itself). Nothing in a pickle runs.

    Args:
        kind: "clip" or "sam" (for the message and hint).
        path: the file.

    Raises:
        BackendError("weights"): naming the file, what is wrong and what to do.
    """
    path = Path(path)
    hint = CLIP_HINT if kind == "clip" else SAM_HINT
    if not path.is_file():
        raise BackendError("weights", f"{kind} weights file not found: {path}", hint)
    check_weights_file(path, "weights", hint)


def load_sam_weights(parts: dict[str, nn.Module], path: str | Path) -> None:
    """Load a segment_anything checkpoint (``.pth`` via ``weights_only=True``, or ``.safetensors``) into
    the ``image_encoder``/``prompt_encoder``/``mask_decoder`` parts, strictly."""
    path = Path(path)
    if not path.is_file():
        raise BackendError("weights", f"sam weights file not found: {path}", SAM_HINT)
    state = read_state_dict(path, "weights", SAM_HINT)
    state = {k: v for k, v in state.items() if k not in SAM_WRAPPER_KEYS}
    holder = nn.Module()  # one state dict with the checkpoint's own key names ("image_encoder.…")
    for prefix, part in parts.items():
        holder.add_module(prefix, part)
    problems = key_problems(state, holder.state_dict())
    if problems:
        raise BackendError("weights", f"SAM weights {path} do not fit the configured SAM size; " + "; ".join(problems),
                           "choose the config matching the SAM size (vit_b/vit_l/vit_h)")
    holder.load_state_dict(state, strict=True)
