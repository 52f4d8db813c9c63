"""Batch throughput on this machine: the demo model over N copies of the sample through the local batch path.

Run: ``python benchmarks/batch_bench.py [--copies 8] [--threads 1 2] [--mode view|find-all]``.

For each torch thread count, a fresh child process with ``RSREFSEG2_THREADS`` set runs
``backend.batch.run.run_batch`` (no Ray: the local runner, one loaded model) over N copies of
``resources/sample/sample.tif`` (512² px at 0.5 m, native resolution) with ``resources/models/demo-synthetic``
on the CPU, and reads each part's seconds from the batch's manifest: views/s = N / Σ part seconds (a view is one
sample, one part), per core = views/s / threads. The model's load is timed apart, in another fresh child that
builds the batch's ``PartWorker`` only (what the local runner does once per run). The machine may be shared:
the load average before and after each child is recorded. Writes ``benchmarks/results/batch_bench.json`` and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "resources" / "sample" / "sample.tif"
CHECKPOINT = ROOT / "resources" / "models" / "demo-synthetic.safetensors"
RESULTS = ROOT / "benchmarks" / "results" / "batch_bench.json"
PHRASE = "the red building at the top left"


def settings(mode: str):
    """The batch's settings: the demo checkpoint on the CPU at the sample's native resolution."""
    from backend.batch.work import BatchSettings

    return BatchSettings(phrases=(PHRASE,), mode=mode, resolution=None, checkpoint=str(CHECKPOINT), device="cpu")


def child_batch(copies: int, mode: str) -> dict:
    """Run the local batch over ``copies`` copies of the sample; the per-part seconds from its manifest."""
    import torch

    from backend.batch.run import run_batch

    with tempfile.TemporaryDirectory(prefix="rsrefseg2-batch-bench-") as scratch:
        inputs = Path(scratch) / "inputs"
        inputs.mkdir()
        for index in range(copies):
            shutil.copy(SAMPLE, inputs / f"sample_{index:03d}.tif")
        start = time.perf_counter()
        summary = run_batch([str(inputs)], settings(mode), str(Path(scratch) / "out"), show_progress=False)
        wall = time.perf_counter() - start
        manifest = json.loads((Path(scratch) / "out" / "manifest.json").read_text(encoding="utf-8"))
    part_seconds = [entry["seconds"] for entry in manifest["parts"] if entry["status"] == "done"]
    return {"wall_s": wall, "part_seconds": part_seconds, "done": summary["done"], "failed": summary["failed"],
            "polygons": summary["polygons"], "torch_threads": torch.get_num_threads()}


def child_load(mode: str) -> dict:
    """Seconds to build the batch's ``PartWorker`` (imports, model build, checkpoint read) in a fresh process."""
    start = time.perf_counter()
    from backend.batch.work import PartWorker

    with tempfile.TemporaryDirectory(prefix="rsrefseg2-batch-bench-") as scratch:
        PartWorker(settings(mode), scratch)
    return {"load_s": time.perf_counter() - start}


def run_child(kind: str, threads: int, copies: int, mode: str) -> dict:
    """One child process with ``threads`` torch threads (``RSREFSEG2_THREADS``); its JSON line and the load."""
    env = {**os.environ, "RSREFSEG2_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--copies", str(copies), "--mode", mode],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: the {kind} child with {threads} thread(s) failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_average"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    return result


def cpu_model() -> tuple[str, bool]:
    """The CPU's model name and whether it has AVX512-BF16 (from /proc/cpuinfo, as ``lscpu`` shows them)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or "unknown", False
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return name, "avx512_bf16" in flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of the sample (parts, views)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts")
    parser.add_argument("--mode", choices=("view", "find-all"), default="view")
    parser.add_argument("--child", choices=("batch", "load"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_batch(args.copies, args.mode) if args.child == "batch" else child_load(args.mode)))
        return
    name, bf16 = cpu_model()
    rows = {}
    for threads in args.threads:
        load = run_child("load", threads, args.copies, args.mode)
        batch = run_child("batch", threads, args.copies, args.mode)
        views_per_s = len(batch["part_seconds"]) / sum(batch["part_seconds"])
        rows[str(threads)] = {"load_s": round(load["load_s"], 2), "wall_s": round(batch["wall_s"], 2),
                              "views_per_s": round(views_per_s, 3),
                              "views_per_s_per_core": round(views_per_s / threads, 3),
                              "median_view_s": round(statistics.median(batch["part_seconds"]), 3),
                              "done": batch["done"], "failed": batch["failed"], "polygons": batch["polygons"],
                              "torch_threads": batch["torch_threads"],
                              "load_average": {"load_child": load["load_average"],
                                               "batch_child": batch["load_average"]}}
    report = {"model": CHECKPOINT.name, "raster": f"{args.copies} copies of {SAMPLE.name} (512x512 px, 0.5 m)",
              "phrase": PHRASE, "mode": args.mode, "resolution": "native",
              "command": "python benchmarks/batch_bench.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": {"cpu": name, "avx512_bf16": bf16, "logical_cpus": os.cpu_count(),
                          "platform": platform.platform(), "niceness": os.nice(0)},
              "by_threads": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{report['raster']}, {args.mode} mode, {CHECKPOINT.name} on {name} (avx512_bf16: {bf16})")
    print("| torch threads | model load s | views/s | views/s per core | median view s | load average |")
    print("|---|---|---|---|---|---|")
    for threads, row in rows.items():
        print(f"| {threads} | {row['load_s']:.2f} | {row['views_per_s']:.3f} | {row['views_per_s_per_core']:.3f} | "
              f"{row['median_view_s']:.3f} | {row['load_average']['batch_child'][0]}–"
              f"{row['load_average']['batch_child'][1]} |")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
