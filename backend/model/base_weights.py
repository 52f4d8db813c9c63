"""Base (pre-trained) weights from local files: SAM checkpoints and the SHA-256 records checkpoints keep.

open_clip checkpoints are loaded by open_clip itself (``clip_encoder.create_open_clip``); SAM ``.pth`` files
are read with ``torch.load(weights_only=True)``, never unpickled freely.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from backend.errors import BackendError

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


def load_sam_weights(parts: dict[str, nn.Module], path: str | Path) -> None:
    """Load a segment_anything checkpoint (``.pth`` via ``weights_only=True``, or ``.safetensors``) into
    the ``image_encoder``/``prompt_encoder``/``mask_decoder`` parts, strictly."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise BackendError("weights", f"cannot read SAM weights {path.name}: {exc}",
                           "pass an official segment_anything sam_vit_*.pth file") from exc
    state = {k: v for k, v in state.items() if k not in SAM_WRAPPER_KEYS}
    for prefix, part in parts.items():
        sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
        try:
            part.load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise BackendError("weights", f"SAM weights {path.name} do not fit the configured SAM size: {exc}",
                               "choose the config matching the SAM size (vit_b/vit_l/vit_h)") from exc
    leftover = sorted(k for k in state if k.split(".", 1)[0] not in parts)
    if leftover:
        raise BackendError("weights", f"SAM weights {path.name} have unexpected keys: {', '.join(leftover[:10])}",
                           "pass an official segment_anything sam_vit_*.pth file")
