"""Write a ``.safetensors`` file one tensor at a time, so a multi-gigabyte conversion never holds its output.

The header (names, dtypes, shapes, byte offsets) is known before any tensor is made; each tensor is then made,
written and dropped. The file is written beside its destination and renamed into place, so a failure leaves
nothing half-written under the destination name.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from backend.files.scratch import create_scratch

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}


def _header(entries: list[tuple[str, tuple[int, ...], torch.dtype]], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name, shape, dtype in entries:
        size = math.prod(shape) * dtype.itemsize
        header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return raw + b" " * (-len(raw) % 8)  # tensors start 8-byte aligned, as safetensors writes them


def write_streamed(path: Path, entries: list[tuple[str, tuple[int, ...], torch.dtype]],
                   make: Callable[[str], torch.Tensor], metadata: dict[str, str],
                   progress: Callable[[int, int], None] | None = None) -> None:
    """Write ``entries`` in order, each tensor made by ``make(name)`` just before it is written.

    Args:
        path: destination ``.safetensors`` (replaced atomically).
        entries: (name, shape, dtype) of every tensor, in file order.
        make: returns the CPU tensor of a name; it must have exactly the announced shape and dtype.
        metadata: the header's ``__metadata__`` strings.
        progress: called with (tensors written, total) after each tensor.

    Raises:
        ValueError: a made tensor differs from its announced shape or dtype (a bug, never user input).
    """
    header = _header(entries, metadata)
    fd, tmp = create_scratch(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(len(header).to_bytes(8, "little"))
            stream.write(header)
            for index, (name, shape, dtype) in enumerate(entries):
                tensor = make(name)
                if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                    raise ValueError(f"{name}: made {tuple(tensor.shape)} {tensor.dtype}, announced {shape} {dtype}")
                stream.write(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
                del tensor
                if progress is not None:
                    progress(index + 1, len(entries))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
