"""Reading weight files safely: what a file is (by its bytes), a complete safetensors file, a tensors-only pickle.

Every problem becomes a ``BackendError`` that names the file, says what is wrong and what to do, with the code
the caller gives ("checkpoint" for trained checkpoints, "weights" for base weights). Library texts never reach the
user: torch's advice for a refused pickle is to load it with code execution enabled, which we never do.
PyTorch files (zip archives and legacy pickles) are read only with ``torch.load(weights_only=True)``, whose
unpickler builds tensors and plain containers and refuses every other Python object without calling it.
"""

from __future__ import annotations

import math
import mmap
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from backend.errors import BackendError

from .safetensors_header import AGAIN, SafetensorsHeader, read_header

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = b"\x80"  # a pickle of protocol 2 or later starts with PROTO; torch's legacy files too


def kind_of(path: Path) -> str:
    """"safetensors", "zip" (a PyTorch archive), "pickle" (a legacy PyTorch file or a plain pickle) or "unknown",
    from the first bytes; a safetensors file is recognised by an 8-byte length followed by ``{``."""
    with open(path, "rb") as stream:
        head = stream.read(9)
    # Safetensors first: its length field's first byte is 0x80 (a pickle's PROTO) for one header length in 256.
    # A pickle's bytes 5-8 are its frame length or first opcodes: three zeros then "{" is no pickle torch writes.
    if len(head) == 9 and head[8:9] == b"{" and head[5:8] == b"\0\0\0":
        return "safetensors"
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head.startswith(_PICKLE_PROTOCOL):
        return "pickle"
    return "unknown"


def _error(code: str, path: Path, what: str, hint: str) -> BackendError:
    return BackendError(code, f"{path} {what}", hint)


def check_safetensors(path: Path, code: str) -> SafetensorsHeader:
    """Check that ``path`` is a whole safetensors file: a readable header whose tensors fill the rest exactly.

    Returns:
        The checked header (``safetensors_header.read_header``); no tensor data is read.

    Raises:
        BackendError(code): naming the file and what is wrong (not safetensors, damaged header, truncated,
            trailing bytes).
    """
    return read_header(path, code)


def read_safetensors(path: Path, code: str) -> dict[str, torch.Tensor]:
    """All tensors of a checked safetensors file (on the CPU)."""
    check_safetensors(path, code)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _error(code, path, f"cannot be read as safetensors ({type(exc).__name__})", AGAIN) from None


TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                "BOOL": torch.bool}


def map_safetensors(path: Path, header: SafetensorsHeader, code: str) -> dict[str, torch.Tensor]:
    """All tensors of a checked safetensors file, memory-mapped: nothing is read until a tensor is used, and what is
    read lives in the page cache, once (no private copy of the file).

    The mapping is copy-on-write, so an in-place change to a tensor (fine-tuning) never reaches the file.

    Args:
        path: the file.
        header: its header as ``check_safetensors`` returned it (the file is not read again for it).
        code: the ``BackendError`` code to raise with.

    Raises:
        BackendError(code): a tensor of a dtype no model of ours uses.
    """
    with open(path, "rb") as stream:
        mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_COPY)
    start = 8 + header.length
    tensors = {}
    for name, entry in header.tensors.items():
        dtype = TORCH_DTYPES.get(entry.dtype)
        count = math.prod(entry.shape)
        if dtype is None:
            raise _error(code, path, f"has a tensor {name!r} of dtype {entry.dtype}, which no model of ours uses",
                         "use a file of F32, BF16 or F16 tensors, as training writes")
        if count == 0:
            tensors[name] = torch.empty(entry.shape, dtype=dtype)
        elif (start + entry.begin) % dtype.itemsize:  # not aligned to its item size (another writer): a copy
            raw = bytearray(mapped[start + entry.begin:start + entry.end])
            tensors[name] = torch.frombuffer(raw, dtype=dtype, count=count).view(entry.shape)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "non-writable buffer": the copy-on-write map is writable
                tensors[name] = torch.frombuffer(mapped, dtype=dtype, count=count,
                                                 offset=start + entry.begin).view(entry.shape)
    return tensors


def read_torch_pickle(path: Path, code: str, hint: str, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with readable errors.

    Args:
        path: a PyTorch zip archive or legacy pickle file.
        code: the error code to raise with.
        hint: what to do when the file holds Python objects besides tensors (it is refused; nothing in it runs).
        mmap: map the tensors instead of reading them (zip archives only): a cheap check of the whole file.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's protocol warnings are not the user's business
            return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)
    except pickle.UnpicklingError:
        raise _error(code, path, "holds Python objects besides tensors (a general pickle); it was refused "
                                 "without running any of it", hint) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc):
            raise
        raise _error(code, path, f"is not a readable PyTorch file ({type(exc).__name__}; damaged or truncated)",
                     AGAIN) from None


def read_state_dict(path: Path, code: str, hint: str) -> dict[str, torch.Tensor]:
    """A ``{name: tensor}`` state dict from a safetensors file or a PyTorch file (tensors only).

    Args:
        path: the weights file.
        code: the error code to raise with ("weights" for base weights).
        hint: what to do when the file is of the wrong kind or holds objects besides tensors.
    """
    kind = kind_of(path)
    if kind == "safetensors":
        return read_safetensors(path, code)
    if kind == "unknown":
        raise _error(code, path, "is neither a safetensors file nor a PyTorch file", hint)
    state = read_torch_pickle(path, code, hint)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise _error(code, path, f"holds a {type(state).__name__}, not a state dict of named tensors", hint)
    return state


def check_weights_file(path: Path, code: str, hint: str) -> None:
    """Refuse, before a library reads it, a weights file that is damaged, truncated or a general pickle.

    Safetensors files have their header checked; PyTorch zip archives are opened memory-mapped (cheap: tensors
    are not read); legacy pickles are loaded with ``weights_only=True``.
    """
    kind = kind_of(path)
    if kind == "safetensors":
        check_safetensors(path, code)
    elif kind == "unknown":
        raise _error(code, path, "is neither a safetensors file nor a PyTorch file", hint)
    else:
        read_torch_pickle(path, code, hint, mmap=kind == "zip")
