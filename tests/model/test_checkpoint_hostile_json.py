"""Hostile JSON in a checkpoint's two files (second hostile sweep): a sidecar or a safetensors header nested 100000
levels deep or holding a 5000-digit integer, and a header length larger than the file or than 100 MB, are refused
with a "checkpoint" error that names the file and the reason; never a RecursionError or ValueError traceback, and
never by reading the claimed header.

Real files: a tiny checkpoint written by ``save_checkpoint``, then edited on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from backend.errors import BackendError
from backend.loading import load_predictor
from backend.model import build_model, load_config, load_model, save_checkpoint
from backend.model.checkpoint.io import read_checkpoint_meta
from backend.worker import error_reply

DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "9" * 5000


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_checkpoint(build_model(load_config("tiny")), path, include_base=True)
    return path


@pytest.fixture
def ckpt(saved: Path, tmp_path: Path) -> Path:
    path = tmp_path / saved.name
    shutil.copyfile(saved, path)
    shutil.copyfile(saved.with_suffix(".json"), path.with_suffix(".json"))
    return path


def _refused(path: Path, *fragments: str) -> BackendError:
    """Load ``path`` directly and the way the worker's load request does; both must refuse it clearly."""
    with pytest.raises(BackendError) as info:
        load_model(path)
    with pytest.raises(BackendError) as via_worker:
        load_predictor(checkpoint=str(path), device="cpu")
    for exc in (info.value, via_worker.value):
        assert exc.code == "checkpoint" and exc.hint, exc.message
        assert error_reply("r1", exc).code == "checkpoint"  # the worker answers it, not as "internal"
        for fragment in fragments:
            assert fragment in exc.message, exc.message
    return info.value


def _sidecar_text(ckpt: Path, replace: str, by: str) -> Path:
    """Edit the sidecar's text (compact JSON) by replacing its first ``replace`` with ``by``."""
    sidecar = ckpt.with_suffix(".json")
    text = json.dumps(json.loads(sidecar.read_text()), separators=(",", ":"))
    assert replace in text
    sidecar.write_text(text.replace(replace, by, 1))
    return sidecar


def test_a_sidecar_nested_100000_levels_deep_is_refused(ckpt: Path) -> None:
    sidecar = ckpt.with_suffix(".json")
    sound = sidecar.read_text()
    sidecar.write_text(DEEP)
    _refused(ckpt, str(sidecar), "nested deeper than 32 levels")
    sidecar.write_text(sound)
    _sidecar_text(ckpt, '"meta":{', f'"meta":{{"notes":{DEEP},"title":"t"')
    _refused(ckpt, str(sidecar), "nested deeper than 32 levels")
    with pytest.raises(BackendError, match="nested deeper"):
        read_checkpoint_meta(ckpt)


def test_a_sidecar_nested_just_past_the_limit_is_refused(ckpt: Path) -> None:
    """33 levels parse without a RecursionError but are still refused: no reader of ours walks them."""
    sidecar = _sidecar_text(ckpt, '"meta":{', '"meta":{"notes":' + "[" * 31 + "]" * 31 + ',"title":"t"')
    _refused(ckpt, str(sidecar), "nested deeper than 32 levels")


def test_a_sidecar_with_a_5000_digit_integer_is_refused(ckpt: Path) -> None:
    sidecar = _sidecar_text(ckpt, '"input_size":256', f'"input_size":{HUGE}')
    _refused(ckpt, str(sidecar), "an integer of 5000 digits")


def test_a_sidecar_of_gigantic_size_is_not_read(ckpt: Path) -> None:
    sidecar = ckpt.with_suffix(".json")
    with open(sidecar, "r+b") as stream:
        stream.truncate(1 << 30)  # sparse: 1 GiB of holes after the JSON
    _refused(ckpt, str(sidecar), "1073741824 bytes")


def _with_header(ckpt: Path, header: bytes, length: int | None = None) -> None:
    """Replace the safetensors header of ``ckpt`` (its data region kept); ``length``: a forged length field."""
    data = ckpt.read_bytes()
    old = int.from_bytes(data[:8], "little")
    ckpt.write_bytes((len(header) if length is None else length).to_bytes(8, "little") + header + data[8 + old:])


def _header_of(ckpt: Path) -> dict:
    data = ckpt.read_bytes()
    return json.loads(data[8:8 + int.from_bytes(data[:8], "little")])


def test_a_safetensors_header_nested_100000_levels_deep_is_refused(ckpt: Path) -> None:
    header = _header_of(ckpt)
    text = json.dumps(header, separators=(",", ":"))
    _with_header(ckpt, (text[:-1] + f',"x":{DEEP}}}').encode())
    _refused(ckpt, str(ckpt), "damaged safetensors header", "nested deeper than 32 levels")


def test_a_safetensors_header_with_a_5000_digit_offset_is_refused(ckpt: Path) -> None:
    header = _header_of(ckpt)
    name = next(k for k in header if k != "__metadata__")
    end = header[name]["data_offsets"][1]
    text = json.dumps(header, separators=(",", ":")).replace(f'"data_offsets":[{header[name]["data_offsets"][0]},'
                                                            f'{end}]', f'"data_offsets":[0,{HUGE}]', 1)
    _with_header(ckpt, text.encode())
    _refused(ckpt, str(ckpt), "damaged safetensors header", "an integer of 5000 digits")


def test_a_header_length_beyond_the_file_or_100_mb_is_refused_unread(ckpt: Path) -> None:
    header = json.dumps(_header_of(ckpt)).encode()
    _with_header(ckpt, header)
    size = ckpt.stat().st_size
    _with_header(ckpt, header, length=size)
    _refused(ckpt, str(ckpt), f"header length field says {size} bytes", "more than the")
    _with_header(ckpt, header, length=150 << 20)
    with open(ckpt, "r+b") as stream:
        stream.truncate(300 << 20)  # sparse: the claimed header would fit in the file
    _refused(ckpt, str(ckpt), f"header length field says {150 << 20} bytes", "100 MB")
