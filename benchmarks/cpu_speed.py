"""Paper-model speed on CPU as the product runs it: cold query, re-query, per precision, with a profile.

Run: ``RSREFSEG2_WEIGHTS_DIR=… python benchmarks/cpu_speed.py CHECKPOINT [--threads 2] [--precisions fp32,bf16]
[--profile]``. ``CHECKPOINT`` is a converted full-size checkpoint (``weights import-authors`` of the authors' file,
or ``benchmarks/authors_import_bench.py make`` + ``convert`` for random weights of the real shapes); the weights
folder must hold the SigLIP 2 tokenizer (offline: a stand-in ``tokenizer.json`` imported as ``siglip2-tokenizer``).

Each precision loads the checkpoint with ``backend.loading.load_predictor`` (as the CLI and the worker do), then on
a fresh 1024² view: ``set_image`` (both image encoders, "encode"), the first ``predict`` of a phrase (text encoder,
prompter, mask decoder, ranker: "decode"), their sum ("cold query", the model already loaded), and a second
phrase on the cached view ("re-query") and one include click on the first phrase's answer, its logits fed back
(issue 26's re-decode, "click"). A matmul probe gives the device's GFLOP/s in that dtype and the model's
FLOPs are counted once (``torch.utils.flop_counter``) so that each time reads as a share of the matmul rate.
With two precisions the first phrase's masks (probability > 0.5) are compared (IoU): what bf16 costs in
accuracy on these weights. ``--profile`` adds tables of the ten operators with the most self CPU time in
``set_image`` and in a re-query. Prints tables and writes ``benchmarks/results/cpu_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from backend.loading import load_predictor
from backend.model.device import autocast, native_cpu_bf16

RESULTS = Path(__file__).with_name("results") / "cpu_speed.json"
VIEW = 1024
PHRASES = ("the large white storage tank next to the road", "a red-roofed building near the road")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(dtype: torch.dtype, side: int = 2048, repeats: int = 5) -> float:
    """The device's square-matmul rate in ``dtype`` (best of ``repeats``), GFLOP/s."""
    a, b = torch.randn(side, side).to(dtype), torch.randn(side, side).to(dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * side**3 / best / 1e9


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def view_image(seed: int) -> np.ndarray:
    """A VIEW×VIEW×3 uint8 image with some structure (blocks of colour over noise)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (VIEW, VIEW, 3), dtype=np.uint8)
    for _ in range(40):
        y, x = rng.integers(0, VIEW - 64, 2)
        image[y:y + 64, x:x + 64] = rng.integers(80, 255, 3, dtype=np.uint8)
    return image


def encode_flops(predictor: Any, image: np.ndarray) -> int:
    """FLOPs of one ``set_image`` (counted on the cached model, not timed)."""
    with FlopCounterMode(display=False) as counter:
        predictor.set_image(image)
    return counter.get_total_flops()


def profile_call(call, rows: int = 10) -> list[dict[str, Any]]:
    """The operators with the most self CPU time in one ``call()``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    return [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 3), "calls": e.count,
             "share": round(e.self_cpu_time_total / total, 3)} for e in events]


def run_precision(checkpoint: str, precision: str, profile: bool) -> tuple[dict[str, Any], np.ndarray]:
    """One precision's timings (and profile); also the first phrase's H×W probabilities on the timed view."""
    start = time.perf_counter()
    predictor = load_predictor(checkpoint, device="cpu", precision=precision)
    load_s = time.perf_counter() - start
    warm = view_image(0)  # one untimed pass: oneDNN builds its kernels on first use
    predictor.set_image(warm)
    predictor.predict(PHRASES[0])
    image = view_image(1)
    encode_s = _timed(lambda: predictor.set_image(image))
    answers = []
    decode_s = _timed(lambda: answers.append(predictor.predict(PHRASES[0])))
    requery_s = _timed(lambda: predictor.predict(PHRASES[1]))
    answer = predictor.predict(PHRASES[0])
    click_s = _timed(lambda: predictor.predict(PHRASES[0], points=[[VIEW / 2, VIEW / 2]], point_labels=[1],
                                               mask_input=answer.next_mask_input))
    result = {"precision": predictor.precision, "reason": predictor.precision_reason, "load_s": round(load_s, 2),
              "encode_s": round(encode_s, 2), "decode_s": round(decode_s, 3),
              "cold_query_s": round(encode_s + decode_s, 2), "requery_s": round(requery_s, 3),
              "click_s": round(click_s, 3),
              "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    with autocast(predictor.device, predictor.precision):
        result["encode_tflop"] = round(encode_flops(predictor, view_image(2)) / 1e12, 3)
    if profile:
        with autocast(predictor.device, predictor.precision):
            result["profile"] = profile_call(lambda: predictor.set_image(view_image(3)))
        result["profile_requery"] = profile_call(lambda: predictor.predict(PHRASES[1]))
    return result, answers[0].probs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native, why = native_cpu_bf16()
    rows, masks = [], {}
    for precision in args.precisions.split(","):
        rate = matmul_gflops(DTYPES[precision])
        row, probs = run_precision(args.checkpoint, precision, args.profile)
        masks[precision] = probs
        row["matmul_gflops"] = round(rate, 1)
        row["share_of_matmul_rate"] = round(row["encode_tflop"] * 1e3 / rate / row["encode_s"], 3)
        rows.append(row)
    print(f"\n{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
          f"native bf16: {native} ({why}), load average {os.getloadavg()[0]:.1f}\n")
    print("| precision | matmul GFLOP/s | encode TFLOP | set_image s | first predict s | cold query s | "
          "re-query s | click s | share of matmul rate | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["precision"], r["matmul_gflops"], r["encode_tflop"], r["encode_s"], r["decode_s"],
                 r["cold_query_s"], r["requery_s"], r["click_s"], f"{r['share_of_matmul_rate']:.0%}", r["peak_rss_gib"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    for r in rows:
        for table, what in (("profile", "set_image"), ("profile_requery", "re-query")):
            for line in r.get(table, []):
                print(f"  {r['precision']} {what:<9} {line['op']:<40} {line['self_s']:>7} s {line['share']:>6.1%} "
                      f"({line['calls']})")
    agreement = None
    if len(masks) == 2:
        pa, pb = masks.values()
        a, b = pa > 0.5, pb > 0.5
        agreement = {"mask_iou": round(float((a & b).sum() / max((a | b).sum(), 1)), 4),
                     "pixels_differing": int((a ^ b).sum()), "mask_pixels": [int(a.sum()), int(b.sum())],
                     "mean_abs_probability_difference": round(float(np.abs(pa - pb).mean()), 5)}
        print(f"\nmask agreement {' vs '.join(masks)} (first phrase, probability > 0.5): {agreement}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": args.threads, "native_bf16": native, "native_bf16_reason": why,
                                   "load_average": os.getloadavg()[0], "torch": torch.__version__,
                                   "rows": rows, "agreement": agreement}, indent=2) + "\n")


if __name__ == "__main__":
    main()
