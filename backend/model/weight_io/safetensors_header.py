"""The header of a safetensors file, read and checked on its own, before any tensor byte is touched.

A safetensors file is an 8-byte little-endian header length, a JSON header (``{name: {dtype, shape,
data_offsets}, "__metadata__": {str: str}}``) and the tensors' bytes. The length is checked against the file and
safetensors' own 100 MB limit before the header is read, the JSON is parsed within bounds (``bounded_json``), and
every entry is checked (a known dtype, a shape of non-negative integers, offsets that hold exactly that many bytes
and tile the data region), so callers can check names, dtypes and shapes against a model without reading data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from backend.errors import BackendError
from backend.files.bounded_json import JsonLimitError, loads_bounded

MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header (100 MB)
AGAIN = "the file is incomplete or damaged (an interrupted copy or download): copy or download it again"
# Bytes per item of every dtype safetensors writes.
ITEM_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
              "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it.

    Attributes:
        dtype: the safetensors dtype name ("F32", "BF16", …).
        shape: its dimensions.
        begin, end: its byte range inside the data region (after the header).
    """

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header.

    Attributes:
        length: the JSON header's length in bytes (the data region starts at ``8 + length``).
        tensors: every tensor entry by name.
        metadata: the ``__metadata__`` strings (empty when there are none).
    """

    length: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]

    @property
    def data_size(self) -> int:
        """Bytes of the data region the entries describe."""
        return max((entry.end for entry in self.tensors.values()), default=0)


def _damaged(code: str, path: Path, why: str) -> BackendError:
    return BackendError(code, f"{path} has a damaged safetensors header ({why})", AGAIN)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(name: str, info: object, code: str, path: Path) -> TensorEntry:
    if not isinstance(info, dict):
        raise _damaged(code, path, f"entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ITEM_SIZES:
        raise _damaged(code, path, f"entry {name!r} has an unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
        raise _damaged(code, path, f"entry {name!r}: shape must be a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)
            and offsets[0] <= offsets[1]):
        raise _damaged(code, path, f"entry {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end")
    if offsets[1] - offsets[0] != math.prod(shape) * ITEM_SIZES[dtype]:
        raise _damaged(code, path, f"entry {name!r}: {dtype} {shape} needs {math.prod(shape) * ITEM_SIZES[dtype]} "
                                   f"bytes, its offsets hold {offsets[1] - offsets[0]}")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _check_tiling(tensors: dict[str, TensorEntry], code: str, path: Path) -> None:
    """The entries must cover the data region end to end, without overlaps or gaps (as safetensors writes)."""
    position = 0
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin != position:
            what = "overlaps the previous tensor" if entry.begin < position else "leaves a gap before it"
            raise _damaged(code, path, f"entry {name!r} {what}")
        position = entry.end


def read_header(path: Path, code: str) -> SafetensorsHeader:
    """Read and check the header of the safetensors file ``path``; no tensor data is read.

    Args:
        path: the file.
        code: the ``BackendError`` code to raise with ("checkpoint" or "weights").

    Raises:
        BackendError(code): naming the file and what is wrong: too short, a header length larger than the file or
            than 100 MB, a header that is not bounded JSON, a malformed entry; or a file shorter or longer than its
            header describes.
    """
    size = path.stat().st_size
    with open(path, "rb") as stream:
        length = int.from_bytes(stream.read(8), "little")
        if size < 10 or length < 2:
            raise BackendError(code, f"{path} is not a complete safetensors file (its {size} bytes hold no valid "
                                     "header)", AGAIN)
        if length > MAX_HEADER or length > size - 8:
            limit = "the 100 MB safetensors allows" if length > MAX_HEADER else f"the {size - 8} bytes that follow it"
            raise BackendError(code, f"{path} is not a complete safetensors file: its header length field says "
                                     f"{length} bytes, more than {limit}", AGAIN)
        raw = stream.read(length)
    try:
        parsed = loads_bounded(raw)
    except JsonLimitError as exc:
        raise _damaged(code, path, str(exc)) from None
    if not isinstance(parsed, dict):
        raise _damaged(code, path, "not a JSON object")
    metadata = parsed.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _damaged(code, path, "__metadata__ must map names to strings")
    tensors = {name: _entry(name, info, code, path) for name, info in parsed.items()}
    _check_tiling(tensors, code, path)
    header = SafetensorsHeader(length, tensors, metadata)
    expected = 8 + length + header.data_size
    if size < expected:
        raise BackendError(code, f"{path} is truncated: its header describes {expected} bytes, the file has {size} "
                                 f"({expected - size} missing)", AGAIN)
    if size > expected:
        raise BackendError(code, f"{path} is damaged: {size - expected} unexpected bytes follow its tensors", AGAIN)
    return header
