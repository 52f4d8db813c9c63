"""``benchmarks/gpu_check``: its Python part end to end on the CPU with the tiny config (what a GPU machine runs
with the paper model), and the clear refusal of the shell script where there is no CUDA device."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]


def test_the_dry_run_measures_both_precisions_and_writes_the_table(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    run = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--config", "tiny",
                          "--views", "2", "--repeats", "1", "--tiles-per-side", "2", "--threads", "1",
                          "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["config"] == "tiny" and doc["device"] == "cpu" and doc["view_px"] == 256 and doc["load_s"] > 0
    assert 0 < doc["weights_MiB"] < doc["peak_load_MiB"]  # the tiny model's few MiB; RSS holds torch too
    assert list(doc["precisions"]) == ["fp32", "bf16"]
    for name, row in doc["precisions"].items():
        assert (row["precision"], row["reason"]) == (name, "requested")
        for key in ("cold_set_image_s", "cold_predict_s", "set_image_s", "predict_s", "views_one_by_one_per_s",
                    "views_batched_per_s", "peak_memory_MiB"):
            assert row[key] > 0, (name, key)
        find_all = row["find_all"]
        # 2 × 2 tiles of the model input through the engine's own tiled path, one tile after the other.
        assert find_all["tiles"] == 4 and find_all["raster_px"] == [480, 480] and find_all["batched"] is False
        assert find_all["tiles_per_s"] > 0 and find_all["encode_s"] > 0
    assert "paper: 5.4 FPS (RTX 4090)" in run.stdout and "find-all tiles/s (4 tiles, not batched)" in run.stdout
    assert "peak RSS MiB" in run.stdout and f"wrote {out}" in run.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_a_cuda_device_the_script_says_so_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--out", str(out)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert run.returncode == EXIT_CODES["device"], run.stderr
    assert "error: the GPU check needs a CUDA device" in run.stderr
    assert "hint: run it on a machine with an NVIDIA GPU" in run.stderr and "--device cpu --config tiny" in run.stderr
    assert not out.exists()
