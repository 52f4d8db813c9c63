"""Model benchmark: parameter counts of the real-size configs and predictor latency, fp32 and bf16 autocast.

Run: ``python benchmarks/model_bench.py [--device cpu] [--threads 1] [--repeats 1]
[--precisions fp32,bf16] [--set-image-precisions fp32,bf16]``. Prints tables and writes
``benchmarks/results/model_bench.json``. Models are randomly initialised (nothing is downloaded); sizes are
counted on the meta device, so the paper-size model needs no memory for them. Latency is measured for
``--latency-config`` (default ``rsrefseg2-paper``: SigLIP2-so400m-512 + SAM 2.1 Hiera-L) on a 1024² view, i.e.
the model input without resizing: ``set_image`` (both image encoders) and ``predict`` (text encoder, prompter,
mask decoder) of one phrase on the cached image, under each precision. bf16 wraps both calls in
``torch.autocast(dtype=bfloat16)``; on CUDA the predictor autocasts to bf16 by itself, so there "fp32" means
the predictor's default. ``--set-image-precisions`` limits which precisions also time ``set_image`` (bf16
matmuls are emulated, ~30x slower, on CPUs without AVX512-BF16/AMX); ``predict`` under a precision without
its own ``set_image`` decodes the image cached by the first precision. A short matmul probe records each
dtype's GFLOP/s on the device. Peak RSS is the process's high-water mark after each step.

When a config tokenizes with SigLIP 2's ``tokenizer.json`` and it is not installed (offline), a stand-in
word-level ``tokenizer.json`` over the benchmark phrases is written to a temporary folder: about one token per
word plus EOS, as Gemma gives for these phrases, so the text tower's cost is representative.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from backend.errors import BackendError
from backend.model import ModelConfig, build_model, load_config
from backend.model.clip.gemma_tokenizer import tokenizer_folder
from backend.predictor import ReferringPredictor

RESULTS = Path(__file__).with_name("results") / "model_bench.json"
SIZE_CONFIGS = ("rsrefseg2-paper", "rsrefseg2-b16", "rsrefseg-b16")
PAPER_TOTAL_M = 1447.0  # RSRefSeg 2 with SigLIP2-so400m + SAM 2.1 Hiera-L (METHOD.md §8)
VIEW = 1024
TEXTS = ["the large white storage tank", "a red-roofed building near the road", "the pond",
         "a small grey tank in the top left corner"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def millions(params) -> float:
    return round(sum(p.numel() for p in params) / 1e6, 2)


def parameter_counts(name: str) -> dict[str, float]:
    """Total, trainable and per-part parameter counts in millions, built on the meta device."""
    with torch.device("meta"):
        model = build_model(load_config(name))
    return {
        "total_M": millions(model.parameters()),
        "trainable_M": millions(p for p in model.parameters() if p.requires_grad),
        "clip_M": millions(model.clip_encoder.parameters()),
        "prompter_M": millions(model.prompter.parameters()),
        "sam_M": millions(model.sam_head.parameters()),
        "sam_image_encoder_M": millions(model.sam_head.image_encoder.parameters()),
        "lora_M": millions(p for n, p in model.named_parameters() if n.endswith(("lora_a", "lora_b"))),
        "sam_family": model.config.sam.family,
    }


def peak_rss_mib() -> float:
    """The process's resident-set high-water mark (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device) -> dict[str, float]:
    """GFLOP/s of a 1024×1152 @ 1152×1152 matmul (a SigLIP-width projection) per dtype, median of 3."""
    rates = {}
    for label, dtype in DTYPES.items():
        a = torch.randn(1024, 1152, device=device, dtype=dtype)
        b = torch.randn(1152, 1152, device=device, dtype=dtype)
        a @ b
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            a @ b
            _synchronize(device)
            seconds.append(time.perf_counter() - start)
        rates[label] = round(2 * 1024 * 1152 * 1152 / statistics.median(seconds) / 1e9, 1)
    return rates


def _stand_in_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer.json (with ``<pad>``/``<eos>``) covering the benchmark phrases."""
    words = sorted({w for text in TEXTS for w in text.split()})
    vocab = {token: i for i, token in enumerate(["<pad>", "<eos>", "<unk>", *words])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


def with_available_tokenizer(config: ModelConfig, scratch: Path) -> tuple[ModelConfig, str]:
    """``config`` unchanged when its tokenizer is installed, else with the stand-in tokenizer; and a label."""
    if config.clip.tokenizer_files is None:
        return config, "open_clip"
    try:
        tokenizer_folder(config.clip.tokenizer_files)
        return config, f"{config.clip.tokenizer_files} (installed)"
    except BackendError:
        folder = _stand_in_tokenizer(scratch / "tokenizer")
        clip = dataclasses.replace(config.clip, tokenizer_files=str(folder))
        return dataclasses.replace(config, clip=clip), "stand-in word-level tokenizer.json (SigLIP 2's not installed)"


def _median_seconds(fn: Callable[[Any], object], inputs: list[Any], device: torch.device) -> float:
    """Median seconds of ``fn(x)`` over ``inputs``."""
    seconds = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds), 3)


def latency(name: str, device: str, repeats: int, precisions: list[str], set_image_precisions: list[str]
            ) -> dict[str, object]:
    """Seconds of set_image (a new 1024² view each time) and predict (one phrase, cached image) per precision."""
    with tempfile.TemporaryDirectory() as scratch:
        config, tokenizer = with_available_tokenizer(load_config(name), Path(scratch))
        start = time.perf_counter()
        predictor = ReferringPredictor(build_model(config), device=device)
        build_s = round(time.perf_counter() - start, 1)
        rss = {"after_build_MiB": peak_rss_mib()}
        rng = np.random.default_rng(0)
        rows = {}
        for precision in precisions:
            autocast = (torch.autocast(device_type=predictor.device.type, dtype=torch.bfloat16)
                        if precision == "bf16" else contextlib.nullcontext())
            with autocast:
                row: dict[str, float | None] = {"set_image_s": None}
                if precision in set_image_precisions or not predictor.is_image_set:
                    views = [rng.integers(0, 256, (VIEW, VIEW, 3), dtype=np.uint8) for _ in range(repeats)]
                    row["set_image_s"] = _median_seconds(predictor.set_image, views, predictor.device)
                texts = [TEXTS[i % len(TEXTS)] for i in range(repeats)]
                row["predict_s"] = _median_seconds(predictor.predict, texts, predictor.device)
            row["peak_rss_MiB"] = peak_rss_mib()
            rows[precision] = row
    return {"precisions": rows, "build_s": build_s, "peak_rss": rss, "repeats": repeats, "view": [VIEW, VIEW],
            "input_size": predictor.input_size, "device": str(predictor.device), "threads": torch.get_num_threads(),
            "tokenizer": tokenizer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--latency-config", default="rsrefseg2-paper")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--set-image-precisions", default=None, help="default: all of --precisions")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precisions.split(",")
    set_image_precisions = (args.set_image_precisions or args.precisions).split(",")

    sizes = {name: parameter_counts(name) for name in SIZE_CONFIGS}
    print(f"{'config':<18}{'SAM':>8}{'total M':>10}{'trainable M':>13}{'CLIP M':>9}{'prompter M':>12}{'SAM M':>8}"
          f"{'LoRA M':>8}")
    for name, c in sizes.items():
        print(f"{name:<18}{c['sam_family']:>8}{c['total_M']:>10}{c['trainable_M']:>13}{c['clip_M']:>9}"
              f"{c['prompter_M']:>12}{c['sam_M']:>8}{c['lora_M']:>8}")
    paper = sizes["rsrefseg2-paper"]["total_M"]
    print(f"paper (SigLIP2 + SAM 2.1 Hiera-L): {PAPER_TOTAL_M} M total; "
          f"rsrefseg2-paper {100 * (paper / PAPER_TOTAL_M - 1):+.2f} %")

    device = torch.device(args.device)
    probe = matmul_gflops(device)
    print(f"\nmatmul probe on {device}: " + ", ".join(f"{k} {v} GFLOP/s" for k, v in probe.items()))
    timing = latency(args.latency_config, args.device, args.repeats, precisions, set_image_precisions)
    print(f"\n{args.latency_config} on {timing['device']} ({timing['threads']} threads), {VIEW}² view, random weights, "
          f"built in {timing['build_s']} s, tokenizer: {timing['tokenizer']}")
    print(f"{'precision':<11}{'set_image s':>13}{'predict s':>11}{'peak RSS MiB':>14}")
    for precision, row in timing["precisions"].items():
        set_image = "-" if row["set_image_s"] is None else row["set_image_s"]
        print(f"{precision:<11}{set_image:>13}{row['predict_s']:>11}{row['peak_rss_MiB']:>14}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "parameters": sizes, "paper_total_M": PAPER_TOTAL_M,
        "latency": {args.latency_config: timing}, "matmul_gflops": probe,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg()},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
