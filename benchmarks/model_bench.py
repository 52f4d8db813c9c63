"""Model benchmark: parameter counts of the real-size configs and predictor latency.

Run: ``python benchmarks/model_bench.py [--device cpu] [--repeats 3]``. Prints a table and writes
``benchmarks/results/model_bench.json``. Models are randomly initialised (nothing is downloaded); sizes are
counted on the meta device, so the paper-size model needs no memory. Latency is measured for
``rsrefseg2-b16`` at its full input size (1024²).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from backend.model import build_model, load_config
from backend.predictor import ReferringPredictor

RESULTS = Path(__file__).with_name("results") / "model_bench.json"
SIZE_CONFIGS = ("rsrefseg2-paper", "rsrefseg2-b16", "rsrefseg-b16")
PAPER_TOTAL_M = 1447.0  # RSRefSeg 2 with SAM 2.1 Hiera-L (METHOD.md §8)


def parameter_counts(name: str) -> dict[str, float]:
    """Total, trainable and per-part parameter counts in millions, built on the meta device."""
    with torch.device("meta"):
        model = build_model(load_config(name))

    def millions(params) -> float:
        return round(sum(p.numel() for p in params) / 1e6, 2)

    return {
        "total_M": millions(model.parameters()),
        "trainable_M": millions(p for p in model.parameters() if p.requires_grad),
        "clip_M": millions(model.clip_encoder.parameters()),
        "prompter_M": millions(model.prompter.parameters()),
        "sam_M": millions(model.sam_head.parameters()),
        "sam_image_encoder_M": millions(model.sam_head.image_encoder.parameters()),
        "lora_M": millions(p for n, p in model.named_parameters() if n.endswith(("lora_a", "lora_b"))),
    }


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def latency(name: str, device: str, repeats: int) -> dict[str, float]:
    """Median seconds of set_image (new image) and predict (cached image), and their ratio."""
    predictor = ReferringPredictor(build_model(load_config(name)), device=device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (800, 800, 3), dtype=np.uint8) for _ in range(repeats + 1)]
    texts = ["the large white storage tank", "a red-roofed building near the road", "the pond",
             "a small grey tank in the top left corner"]
    predictor.set_image(images[-1])  # warm-up (allocations, lazy tokenizer)
    predictor.predict(texts[0])
    set_image = [_timed(lambda im=im: predictor.set_image(im)) for im in images[:repeats]]
    queries = [texts[i % len(texts)] for i in range(repeats)]
    predict = [_timed(lambda t=t: predictor.predict(t)) for t in queries]
    s, p = statistics.median(set_image), statistics.median(predict)
    return {"set_image_s": round(s, 3), "predict_s": round(p, 3), "cold_query_s": round(s + p, 3),
            "requery_over_cold": round(p / (s + p), 4), "repeats": repeats, "image_hw": [800, 800],
            "input_size": predictor.input_size, "device": str(predictor.device),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-config", default="rsrefseg2-b16")
    args = parser.parse_args()

    sizes = {name: parameter_counts(name) for name in SIZE_CONFIGS}
    print(f"{'config':<18}{'total M':>10}{'trainable M':>13}{'CLIP M':>9}{'prompter M':>12}{'SAM M':>8}{'LoRA M':>8}")
    for name, c in sizes.items():
        print(f"{name:<18}{c['total_M']:>10}{c['trainable_M']:>13}{c['clip_M']:>9}{c['prompter_M']:>12}"
              f"{c['sam_M']:>8}{c['lora_M']:>8}")
    print(f"paper (SAM 2.1 Hiera-L): {PAPER_TOTAL_M} M total")

    timing = latency(args.latency_config, args.device, args.repeats)
    print(f"\n{args.latency_config} on {timing['device']} ({timing['threads']} threads), 800×800 → "
          f"{timing['input_size']}²: set_image {timing['set_image_s']} s, predict {timing['predict_s']} s, "
          f"re-query / cold query {timing['requery_over_cold']}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "parameters": sizes, "paper_total_M": PAPER_TOTAL_M,
        "latency": {args.latency_config: timing},
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "load_average_1_5_15": os.getloadavg()},
    }, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
