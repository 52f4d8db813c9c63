"""Torch thread count vs query time: the bundled demo model on the sample, cold query and re-query.

Run: ``python benchmarks/threads_bench.py [--threads 1 2] [--repeats 3]``.
Each (thread count, repeat) runs in a fresh child process that sets ``torch.set_num_threads`` first, as the
worker does, loads ``resources/models/demo-synthetic.*`` and runs the demo's job on ``resources/sample/sample.tif``
(native resolution, ``--refine none``): a cold query (image encoders + phrase), then three re-queries on the
same view (cached embeddings; their median is reported). The children run one after another, so the only other load is
whatever else the machine runs, which is the point: the worker's automatic choice (``backend/environment/variables.py``)
is 1 thread on small or busy machines. Writes ``benchmarks/results/threads.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
RESULTS = ROOT / "benchmarks" / "results" / "threads.json"
PHRASES = ("the red building at the top left", "the large pond")


def child(threads: int) -> dict[str, float]:
    """Seconds to load the demo model, run a cold query and re-query, with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    from backend.engine import Engine, SegmentJob
    from backend.loading import load_predictor

    start = time.perf_counter()
    engine = Engine(load_predictor(checkpoint=str(CHECKPOINT), device="cpu"))
    times = {"load_s": time.perf_counter() - start}
    seconds = []
    with tempfile.TemporaryDirectory() as out:
        for index, phrase in enumerate((PHRASES[0], PHRASES[1], PHRASES[0], PHRASES[1])):
            job = SegmentJob(raster=str(SAMPLE), phrases=(phrase,), output_dir=out, output_name=f"q{index}",
                             resolution=None, refine="none")
            start = time.perf_counter()
            engine.run(job)
            seconds.append(time.perf_counter() - start)
    times["cold_s"], times["requery_s"] = seconds[0], statistics.median(seconds[1:])
    times["torch_threads"] = torch.get_num_threads()
    return times


def run_child(threads: int) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--child", str(threads)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    from backend.environment.variables import choose_threads

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    runs = {n: [] for n in args.threads}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every count alike
        for n in args.threads:
            runs[n].append(run_child(n))
    table = {str(n): {key: round(statistics.median(r[key] for r in rs), 3)
                      for key in ("load_s", "cold_s", "requery_s")} | {"runs": rs}
             for n, rs in runs.items()}
    report = {"model": CHECKPOINT.name, "raster": SAMPLE.name, "phrases": PHRASES,
              "job": "native resolution, refine none (the demo's job)", "repeats": args.repeats,
              "machine": {"platform": platform.platform(), "logical_cpus": os.cpu_count(),
                          "niceness": os.nice(0) if hasattr(os, "nice") else None,
                          "load_average_before": load_before,
                          "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                          "automatic_choice": str(choose_threads())},
              "median_seconds_by_threads": table}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'threads':>7} {'load s':>8} {'cold s':>8} {'re-query s':>11}   (median of {args.repeats})")
    for n, row in table.items():
        print(f"{n:>7} {row['load_s']:>8.2f} {row['cold_s']:>8.2f} {row['requery_s']:>11.2f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
