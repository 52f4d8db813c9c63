"""Evaluate a checkpoint: ``python -m training.evaluate --checkpoint X --data JSONL_or_dataset --split test``.

Predictions go through ``backend.predictor.ReferringPredictor``, the plugin's own path (resize, pad, encode,
decode, un-pad, resize to the original size, ``sigmoid > 0.5``), so training and inference cannot drift.
Each image is encoded once and all its phrases are decoded against the cached embeddings.

Prints and writes JSON: gIoU, cIoU, Pr@0.5…0.9 and mean_iou overall, per category and per ``phrase_type``
(``training.metrics``), for the model and for two trivial baselines: the all-empty mask and the whole-image
mask.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from backend.model.authors.location import resolve_checkpoint
from backend.model.checkpoint.io import load_model
from backend.predictor import ReferringPredictor
from training.data.io import read_image, read_mask
from training.data.records import FORMATS, Record, load_records
from training.metrics import RefSegMetric


def evaluate_model(model: nn.Module, records: Sequence[Record], *, device: torch.device | None = None,
                   baselines: bool = False, progress: bool = False) -> dict:
    """Metrics of ``model`` on ``records`` through the plugin's predictor.

    Args:
        model: a model from ``build_model``/``load_model`` (put in eval mode by the caller).
        records: the records to score (any order; images are encoded once per consecutive run).
        device: where to run (None: the model's device).
        baselines: also score the all-empty and whole-image masks.
        progress: show a tqdm bar.

    Returns:
        ``RefSegMetric.compute()`` of the model; with ``baselines``, a dict ``{"model", "all_empty",
        "whole_image"}`` of such results.
    """
    device = device or next(model.parameters()).device
    predictor = ReferringPredictor(model, device=device)
    scores = {"model": RefSegMetric(), "all_empty": RefSegMetric(), "whole_image": RefSegMetric()}
    by_image: dict[Path, list[Record]] = {}
    for record in records:
        by_image.setdefault(record.image, []).append(record)
    bar = tqdm(total=len(records), disable=not progress, desc="evaluate")
    with torch.no_grad():
        for image_path, group in by_image.items():
            image = read_image(image_path)
            height, width = image.shape[:2]
            predictor.set_image(image)
            probs = np.asarray(predictor.predict([r.sentence for r in group]).probs)
            for record, prob in zip(group, probs, strict=True):
                target = read_mask(record, height, width)
                keys = {"category": record.category, "phrase_type": record.phrase_type}
                scores["model"].update(prob > 0.5, target, **keys)
                if baselines:
                    scores["all_empty"].update(np.zeros_like(target, bool), target, **keys)
                    scores["whole_image"].update(np.ones_like(target, bool), target, **keys)
                bar.update(1)
    bar.close()
    if not baselines:
        return scores["model"].compute()
    return {name: metric.compute() for name, metric in scores.items()}


def detect_format(data: Path, split: str) -> str:
    """"jsonl" for a ``.jsonl`` file or a folder with ``{split}.jsonl``; else the benchmark whose
    ``datainfo/{format}_{split}.jsonl`` exists under ``data``."""
    if data.suffix == ".jsonl" or (data / f"{split}.jsonl").is_file():
        return "jsonl"
    for fmt in FORMATS[1:]:
        if (data / "datainfo" / f"{fmt}_{split}.jsonl").is_file():
            return fmt
    raise FileNotFoundError(f"{data} is neither a .jsonl file, a folder with {split}.jsonl, nor a benchmark root "
                            f"with datainfo/<rrsisd|refsegrs|risbench>_{split}.jsonl; pass --format")


def _table(results: dict) -> str:
    cols = ["n", "gIoU", "cIoU", "Pr@0.5", "Pr@0.6", "Pr@0.7", "Pr@0.8", "Pr@0.9"]
    lines = [f"{'':28s}" + "".join(f"{c:>8s}" for c in cols)]

    def row(label: str, summary: dict) -> None:
        lines.append(f"{label:28s}" + "".join(
            f"{summary[c]:8d}" if c == "n" else f"{summary.get(c, float('nan')):8.2f}" for c in cols))

    for name, result in results.items():
        row(name, result)
        if name == "model":
            for group in ("per_category", "per_phrase_type"):
                for key, summary in result[group].items():
                    row(f"  {group[4:]}={key}", summary)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate a checkpoint on a referring-segmentation split.")
    parser.add_argument("--checkpoint", type=resolve_checkpoint, required=True,
                        help="model .safetensors (sidecar .json beside), or the name of an imported checkpoint "
                             "(python -m backend weights download rsrefseg2-rrsisd)")
    parser.add_argument("--data", type=Path, required=True, help=".jsonl file, synthetic folder or benchmark root")
    parser.add_argument("--split", default="test")
    parser.add_argument("--format", choices=FORMATS, help="data format (default: detected)")
    parser.add_argument("--image-dir", type=Path, help="benchmark image folder override")
    parser.add_argument("--clip-weights", help="base CLIP weights for checkpoints without the base")
    parser.add_argument("--sam-weights", help="base SAM weights for checkpoints without the base")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--limit", type=int, help="score only the first N records")
    parser.add_argument("--out", type=Path, help="JSON output (default: <checkpoint>.<split>.eval.json)")
    args = parser.parse_args(argv)
    fmt = args.format or detect_format(args.data, args.split)
    records = load_records(fmt, args.data, args.split, args.image_dir)[: args.limit]
    model = load_model(args.checkpoint, clip_weights=args.clip_weights, sam_weights=args.sam_weights,
                       device=args.device)
    results = evaluate_model(model, records, baselines=True, progress=True)
    out = args.out or args.checkpoint.with_suffix(f".{args.split}.eval.json")
    payload = {"checkpoint": str(args.checkpoint), "data": str(args.data), "format": fmt, "split": args.split,
               **results}
    out.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(_table(results))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
