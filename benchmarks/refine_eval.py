"""View-mode refinement against ground truth: coarse only vs SAM box refinement vs the phrase's own prompts.

Run: ``python benchmarks/refine_eval.py [--checkpoint resources/models/demo-synthetic.safetensors] [--scenes 20]
[--size 512] [--threads 1]``.

Renders synthetic scenes with the training renderer (``training.scene``, 0.5 m/px, seed-stable, not the training
seeds), writes each as a GeoTIFF in UTM, picks up to three referring phrases per scene with the training
phrase generator, and runs the real engine (``backend.engine.Engine``) end to end for each refinement strategy.
The written GeoJSON polygons are rasterised back onto the scene's own grid and compared with the target's mask:
gIoU (mean per-phrase IoU), cIoU (summed intersections over summed unions) and Pr@0.5, as in the paper.

Rows: ``input-scale`` reads the view at the model's input size (``--resolution`` coarser than native, no
refinement: what ``scripts/demo.sh`` does); the other rows read at native resolution, where the view is larger
than the model input and the engine refines with the named strategy. Writes
``benchmarks/results/refine_eval.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.demo_eval import rasterise  # noqa: E402  (after the path above)

RESULTS = ROOT / "benchmarks" / "results" / "refine_eval.json"
DEFAULT_CHECKPOINT = ROOT / "resources" / "models" / "demo-synthetic.safetensors"
EVAL_SEED = 7_000_001  # not a training, validation or test seed of training.synthetic
ROWS = ("input-scale", "none", "box", "phrase", "prompts")


def scores(inter: np.ndarray, union: np.ndarray) -> dict[str, float]:
    """gIoU, cIoU and Pr@0.5 in percent from per-phrase intersections and unions (pixels)."""
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return {"gIoU": round(100 * float(iou.mean()), 2), "cIoU": round(100 * float(inter.sum() / union.sum()), 2),
            "Pr@0.5": round(100 * float((iou >= 0.5).mean()), 2), "n": int(len(iou))}


def evaluate(args: argparse.Namespace) -> dict:
    """Run every row over the scenes; returns the result document."""
    import rasterio
    import torch

    from backend.engine import Engine, SegmentJob
    from backend.loading import load_predictor
    from training.make_sample import write_sample
    from training.scene import render_scene
    from training.synthetic import scene_records

    torch.set_num_threads(args.threads)
    predictor = load_predictor(checkpoint=str(args.checkpoint), device="cpu")
    engine = Engine(predictor)
    input_size = int(predictor.input_size)
    rng = np.random.default_rng(EVAL_SEED)
    inter = {row: [] for row in args.rows}
    union = {row: [] for row in args.rows}
    seconds = {row: 0.0 for row in args.rows}
    tiles = {row: 0 for row in args.rows}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.scenes):
            scene = render_scene(rng, size=args.size)
            records = list(scene_records(scene, rng))
            if not records:
                continue
            folder = Path(tmp) / f"scene{index}"
            raster = write_sample(folder, scene)
            with rasterio.open(raster) as src:
                transform, shape = src.transform, src.shape
            phrases = tuple(dict.fromkeys(p.text for p, _ in records))
            for row in args.rows:
                resolution = scene.gsd_m * args.size / input_size if row == "input-scale" else None
                job = SegmentJob(raster=str(raster), phrases=phrases, output_dir=str(folder), output_name=row,
                                 resolution=resolution, refine="none" if row == "input-scale" else row,
                                 min_area_px=4)
                start = time.perf_counter()
                result = engine.run(job)
                seconds[row] += time.perf_counter() - start
                tiles[row] += result.tiles
                for phrase, target in records:
                    mask, _, _ = rasterise(Path(result.outputs["geojson"]), phrase.text, transform, shape)
                    inter[row].append(int((mask & target).sum()))
                    union[row].append(int((mask | target).sum()))
            print(f"scene {index + 1}/{args.scenes}: {len(records)} phrase(s)", file=sys.stderr)
    rows = {row: {**scores(np.array(inter[row], float), np.array(union[row], float)),
                  "seconds": round(seconds[row], 2), "tiles": tiles[row]} for row in args.rows}
    return {"checkpoint": str(Path(args.checkpoint).name), "scenes": args.scenes, "size": args.size,
            "gsd_m": 0.5, "input_size": input_size, "threads": args.threads, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--size", type=int, default=512, help="scene side in pixels at 0.5 m (default 512)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids oversubscription)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS), help="which rows to run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    doc = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), **evaluate(args)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"\n{doc['checkpoint']}, {doc['scenes']} scenes of {doc['size']}² px at 0.5 m, "
          f"model input {doc['input_size']}")
    print(f"{'row':<12}{'gIoU':>8}{'cIoU':>8}{'Pr@0.5':>8}{'n':>5}{'tiles':>7}{'seconds':>9}")
    for row, r in doc["rows"].items():
        print(f"{row:<12}{r['gIoU']:>8.2f}{r['cIoU']:>8.2f}{r['Pr@0.5']:>8.2f}{r['n']:>5}{r['tiles']:>7}"
              f"{r['seconds']:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
