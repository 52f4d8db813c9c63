"""Device and precision, chosen in one place: CUDA with bf16 autocast, Apple MPS, or CPU float32."""

from __future__ import annotations

import contextlib

import torch

from backend.errors import BackendError


def select_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises:
        BackendError("device"): the requested accelerator is not available here.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError("device", f"CUDA device {spec!r} requested but CUDA is not available",
                               "choose device 'cpu' or 'auto', or install a CUDA build of PyTorch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackendError("device", f"{spec!r} requested but only {torch.cuda.device_count()} CUDA device(s)",
                               "pick an existing device index")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise BackendError("device", "MPS requested but not available", "choose device 'cpu' or 'auto'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise BackendError("device", f"unsupported device {spec!r}", "use auto, cpu, cuda, cuda:N or mps")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op elsewhere (MPS and CPU run float32)."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
