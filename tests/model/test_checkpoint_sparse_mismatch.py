"""A sparse 8 GiB checkpoint whose header is consistent (offsets tile the file exactly) but whose keys and shapes do
not fit its config fails fast: names, shapes and dtypes are checked from the header before any tensor is read
(second hostile sweep: every tensor used to be read first).

The file's data region is a hole made by ``truncate``, so reading it would cost 8 GiB of memory and I/O but no
disk. Each load runs in a child process under a 6 GiB address-space limit (a regression fails there, it cannot
exhaust the machine), which reports the error, the bytes it read (``/proc/self/io`` rchar) and its peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.model import build_model, load_config, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
GIB = 1 << 30
_CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from backend.errors import BackendError
from backend.model import load_model

def read_bytes():
    with open("/proc/self/io") as stream:
        return next(int(line.split()[1]) for line in stream if line.startswith("rchar:"))

before, start = read_bytes(), time.monotonic()
try:
    load_model(sys.argv[1])
    outcome = {"code": None, "message": "loaded"}
except BackendError as exc:
    outcome = {"code": exc.code, "message": exc.message}
except BaseException as exc:
    outcome = {"code": "unexpected " + type(exc).__name__, "message": str(exc)[:500]}
outcome.update(read=read_bytes() - before, seconds=time.monotonic() - start,
               peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps(outcome))
"""


def _sparse_checkpoint(folder: Path, entries: dict[str, tuple[str, list[int], int]], sidecar: dict) -> Path:
    """A safetensors file of ``entries`` (name: dtype, shape, bytes) whose data region is one hole."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape, size) in entries.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = folder / "sparse.safetensors"
    with open(path, "wb") as stream:
        stream.write(len(raw).to_bytes(8, "little") + raw)
        stream.truncate(8 + len(raw) + offset)
    path.with_suffix(".json").write_text(json.dumps(sidecar))
    return path


def _load_in_child(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_sidecars(tmp_path_factory) -> dict[bool, dict]:
    """The sidecars of a tiny checkpoint saved whole and trained-only (base weights random, so none needed)."""
    folder = tmp_path_factory.mktemp("real")
    sidecars = {}
    for include_base in (True, False):
        path = folder / f"base{include_base}.safetensors"
        sidecars[include_base] = json.loads(save_checkpoint(build_model(load_config("tiny")), path,
                                                            include_base=include_base).read_text())
    return sidecars


@pytest.mark.parametrize("include_base", [False, True], ids=["trained-only", "whole-model"])
def test_an_8_gib_checkpoint_of_other_keys_fails_before_reading_data(tmp_path, tiny_sidecars, include_base) -> None:
    path = _sparse_checkpoint(tmp_path, {"giant.weight": ("F32", [2 * GIB], 8 * GIB)}, tiny_sidecars[include_base])
    assert path.stat().st_size > 8 * GIB and path.stat().st_blocks * 512 < 1 << 20  # a hole, not data
    outcome = _load_in_child(path)
    assert outcome["code"] == "checkpoint", outcome
    assert "does not match its config" in outcome["message"] and "unexpected keys: giant.weight" in outcome["message"]
    assert "missing keys" in outcome["message"]
    assert outcome["read"] < 64 << 20, outcome  # the header and the sidecar, not the 8 GiB
    assert outcome["peak_rss"] < 3 * GIB and outcome["seconds"] < 120, outcome


def test_an_8_gib_checkpoint_with_the_right_names_but_wrong_shapes_fails_before_reading_data(
        tmp_path, tiny_sidecars) -> None:
    """The trained keys, all present, but one of them 8 GiB big (and one stored as integers)."""
    model = build_model(load_config("tiny"))
    from backend.model.checkpoint.io import trained_state_keys

    state = model.state_dict()
    keys = trained_state_keys(model)
    entries = {key: ("F32", list(state[key].shape), state[key].numel() * 4) for key in keys}
    entries[keys[0]] = ("F32", [2 * GIB], 8 * GIB)
    entries[keys[1]] = ("I32", list(state[keys[1]].shape), state[keys[1]].numel() * 4)
    outcome = _load_in_child(_sparse_checkpoint(tmp_path, entries, tiny_sidecars[False]))
    assert outcome["code"] == "checkpoint", outcome
    assert f"wrong shapes: {keys[0]} ({2 * GIB},) != {tuple(state[keys[0]].shape)}" in outcome["message"], outcome
    assert f"wrong dtypes: {keys[1]} I32 != float32" in outcome["message"], outcome
    assert outcome["read"] < 64 << 20 and outcome["peak_rss"] < 3 * GIB, outcome
