"""Device and precision, chosen in one place.

Precision is the *compute* precision: ``bf16`` runs the model under ``torch.autocast(dtype=bfloat16)`` (matmuls and
convolutions in bf16, the residual streams and norms in fp32), ``fp32`` runs everything in fp32. ``auto`` picks bf16
where the hardware computes it natively (CUDA; CPUs with AVX512-BF16 or AMX) and fp32 elsewhere, MPS included: on a
CPU without them bf16 is emulated and several times slower than fp32. Storage is separate: frozen weights may be
stored in bf16 (``cast_weights_per_layer``) whatever the compute precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

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


PRECISIONS = ("auto", "fp32", "bf16")
CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flags that mean the CPU computes bf16 matmuls natively (oneDNN uses them).
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str] | None:
    """The CPU feature flags of the first ``flags`` line of ``cpuinfo``; None when there is no such file (not
    Linux) or no flags line."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def native_cpu_bf16(cpuinfo: Path = CPUINFO) -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and why we think so.

    Reads the flags of ``cpuinfo`` (Linux); where there is none, asks oneDNN (``torch.ops.mkldnn``), which checks the
    same instructions itself.
    """
    flags = cpu_flags(cpuinfo)
    if flags is not None:
        found = sorted(flags.intersection(NATIVE_BF16_FLAGS))
        if found:
            return True, f"the CPU has {', '.join(found)}"
        return False, f"the CPU has neither {' nor '.join(NATIVE_BF16_FLAGS)} (bf16 would be emulated, slower)"
    check: Callable[[], bool] | None = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and check():
        return True, "oneDNN reports native bf16 on this CPU"
    return False, "no native bf16 found on this CPU (no CPU flags readable, oneDNN reports none)"


def choose_precision(device: torch.device, requested: str = "auto", cpuinfo: Path = CPUINFO) -> tuple[str, str]:
    """The compute precision for ``device``: ("fp32" or "bf16", the reason in a few words).

    Args:
        device: where the model runs.
        requested: "auto" (bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere and on MPS), "fp32" or
            "bf16" (used as asked, also where slow).
        cpuinfo: where the CPU flags are read (a test passes a file of its own).

    Raises:
        BackendError("bad_request"): an unknown precision.
    """
    requested = (requested or "auto").lower()
    if requested not in PRECISIONS:
        raise BackendError("bad_request", f"unknown precision {requested!r}", "use auto, fp32 or bf16")
    if requested != "auto":
        return requested, "requested"
    if device.type == "cuda":
        return "bf16", "CUDA computes bf16 natively"
    if device.type == "mps":
        return "fp32", "MPS: bf16 autocast is not used there"
    native, why = native_cpu_bf16(cpuinfo)
    return ("bf16" if native else "fp32"), why


def autocasting(device_type: str) -> bool:
    """Whether autocast is on for tensors of ``device_type`` ("cpu" or "cuda"; never for meta tensors)."""
    return device_type in ("cpu", "cuda") and torch.is_autocast_enabled(device_type)


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """bf16 autocast for ``precision == "bf16"`` on CUDA or CPU; a no-op otherwise (fp32 compute)."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Modules whose weights autocast itself casts to bf16 (matmuls and convolutions); under bf16 autocast they read
# bf16-stored weights as they are. Everything else (norms, the MAP latent, position tables) reads fp32.
_AUTOCAST_CASTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                   nn.MultiheadAttention)
LOW_PRECISION = (torch.bfloat16, torch.float16)


def low_precision_keys(model: nn.Module) -> set[str]:
    """State-dict keys whose frozen tensors may stay in bf16: the weights and biases of linear layers, convolutions
    and attention projections (autocast reads them as they are, without a cast per call; fp32 compute casts them
    per call) and embedding tables (looked up in bf16). Everything else (norms, position tables, buffers such as
    SAM's random Fourier matrix) is small and is kept in fp32: code reads some of them outside its module's
    ``forward`` (e.g. ``PositionEmbeddingRandom.forward_with_coords``), where no per-layer cast runs."""
    keys = set()
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, _AUTOCAST_CASTS):
            keys.update({f"{dot}weight", f"{dot}bias"})
        if isinstance(module, nn.Embedding):
            keys.add(f"{dot}weight")
        if isinstance(module, nn.MultiheadAttention):
            keys.update({f"{dot}in_proj_weight", f"{dot}q_proj_weight", f"{dot}k_proj_weight",
                         f"{dot}v_proj_weight", f"{dot}in_proj_bias", f"{dot}out_proj.weight",
                         f"{dot}out_proj.bias"})
    return keys


def _stored(module: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(owner, "_parameters" or "_buffers", name) of the low-precision tensors ``module``'s forward reads itself:
    its own, and for ``nn.MultiheadAttention`` its ``out_proj``'s too (read as tensors, the module never called)."""
    owners = [module, *module.children()] if isinstance(module, nn.MultiheadAttention) else [module]
    found = []
    for owner in owners:
        for table in ("_parameters", "_buffers"):
            for name, tensor in getattr(owner, table).items():
                if tensor is not None and tensor.dtype in LOW_PRECISION:
                    found.append((owner, table, name))
    return found


def _cast_in(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook: swap the module's low-precision weights for fp32 copies, unless autocast casts them."""
    swapped = []
    device_type = next((t.device.type for t in args if isinstance(t, torch.Tensor)), "cpu")
    if not (isinstance(module, _AUTOCAST_CASTS) and autocasting(device_type)):
        for owner, table, name in _stored(module):
            tensors = getattr(owner, table)
            stored = tensors[name]
            tensors[name] = stored.float()  # a plain tensor for the call; the Parameter comes back after it
            swapped.append((tensors, name, stored))
    module._stored_weights.append(swapped)


def _cast_out(module: nn.Module, _args: tuple, _output: object) -> None:
    """Forward hook (also after an exception): put the stored weights back, dropping the fp32 copies."""
    for tensors, name, stored in module._stored_weights.pop():
        tensors[name] = stored


def _embedding_out(module: nn.Embedding, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    """A bf16-stored embedding is looked up in bf16 (no fp32 copy of the table); the rows go on in fp32."""
    return output.float() if output.dtype in LOW_PRECISION else output


def cast_weights_per_layer(model: nn.Module) -> nn.Module:
    """Let a model whose frozen weights are stored in bf16 compute in fp32, one layer at a time.

    Each module casts the bf16 weights it reads to fp32 copies for the duration of its own call and drops them after
    it, so fp32 compute never holds more than one layer's fp32 copy; under bf16 autocast, linear layers,
    convolutions and attention read the bf16 weights directly. Embedding tables are never copied: the lookup is in
    bf16 and its rows are cast to fp32. Modules whose weights are fp32 (trained parts, fp32 checkpoints) are left
    as they are, at the cost of one check per call. Idempotent.

    Args:
        model: any module tree (the hooks look at the dtypes at call time, so weights assigned later count).

    Returns:
        ``model``.
    """
    for module in model.modules():
        if hasattr(module, "_stored_weights"):
            continue
        module._stored_weights = []
        if isinstance(module, nn.Embedding):
            module.register_forward_hook(_embedding_out)
        elif next(module.parameters(recurse=False), None) is not None or module._buffers:
            module.register_forward_pre_hook(_cast_in)
            module.register_forward_hook(_cast_out, always_call=True)
    return model
