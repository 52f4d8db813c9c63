"""A simulated user corrects the demo model with clicks on the synthetic test split; re-decode timing.

Run: ``python benchmarks/click_eval.py [--checkpoint resources/models/demo-synthetic.safetensors] [--scenes 40]
[--threads 2]``.

Scenes of the ``test`` split are rendered with the training renderer (``training.synthetic.render_one``, seed 0,
512² at 0.5 m/px, read at the model's 1 m/px as the engine does) and each picked phrase is answered by
``ReferringPredictor.predict`` on the cached image. The user (issue 26):

- a **miss** (IoU < 0.5 with the target): one include click at the target's interior point (the pixel farthest
  from its edge); if the answer still misses, a second click on the larger error: include at the interior of the
  target's part left out, or exclude at the interior of the answer's part outside the target;
- a **spill** (the answer covers ≥ 30 % of another object): one exclude click at that object's interior point.

Each click is decoded with the clicks before it and the last answer as SAM's mask prompt, as the worker's
``refine`` does. Reports IoU before/after, the share fixed (IoU ≥ 0.5, spills: the other object left out) by one
and by two clicks, and the median wall time of one re-decode on the cached view. Writes
``benchmarks/results/click_eval.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "click_eval.json"
DEFAULT_CHECKPOINT = ROOT / "resources" / "models" / "demo-synthetic.safetensors"


def halve(array: np.ndarray) -> np.ndarray:
    """H×W(×C) → H/2×W/2(×C) by 2×2 means (0.5 m/px → the model's 1 m/px)."""
    h, w = array.shape[:2]
    return array.reshape(h // 2, 2, w // 2, 2, *array.shape[2:]).mean(axis=(1, 3))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def interior(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) pixel centre of ``mask`` farthest from its edge."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(mask)
    y, x = np.unravel_index(distance.argmax(), distance.shape)
    return x + 0.5, y + 0.5


def evaluate(args: argparse.Namespace) -> dict:
    import torch

    from backend.loading import load_predictor
    from training.synthetic import RenderSpec, render_one

    torch.set_num_threads(args.threads)
    predictor = load_predictor(checkpoint=str(args.checkpoint), device="cpu")
    spec = RenderSpec(size=512, gsd_m=(0.5, 0.5))
    misses, spills, times = [], [], []

    def click(text, points, labels, previous):
        start = time.perf_counter()
        prediction = predictor.predict(text, points=np.array(points, np.float32), point_labels=labels,
                                       mask_input=previous)
        times.append(time.perf_counter() - start)
        return prediction

    for index in range(args.scenes):
        scene, records = render_one(spec, 0, "test", index)
        predictor.set_image(halve(scene.image.astype(np.float32)).round().astype(np.uint8), image_key=index)
        for phrase, mask in records:
            target = halve(mask.astype(np.float32)) >= 0.5
            first = predictor.predict(phrase.text)
            answer = first.probs[0] > 0.5
            before = iou(answer, target)
            if before < 0.5:
                points, labels = [interior(target)], [1]
                one = click(phrase.text, points, labels, first.next_mask_input)
                after_one = iou(one.probs[0] > 0.5, target)
                after_two = after_one
                if after_one < 0.5:
                    a1 = one.probs[0] > 0.5
                    left_out, outside = target & ~a1, a1 & ~target
                    if left_out.sum() >= outside.sum():
                        points, labels = [*points, interior(left_out)], [*labels, 1]
                    else:
                        points, labels = [*points, interior(outside)], [*labels, 0]
                    two = click(phrase.text, points, labels, one.next_mask_input)
                    after_two = iou(two.probs[0] > 0.5, target)
                misses.append((before, after_one, after_two))
            for other in scene.objects:
                other_mask = halve(other.mask.astype(np.float32)) >= 0.5
                if other_mask.sum() == 0 or (other_mask & target).any():
                    continue
                if (answer & other_mask).sum() > 0.3 * other_mask.sum():
                    one = click(phrase.text, [interior(other_mask)], [0], first.next_mask_input)
                    a1 = one.probs[0] > 0.5
                    spills.append((before, iou(a1, target), float((a1 & other_mask).sum() / other_mask.sum())))
                    break
    m, s = np.array(misses, float).reshape(-1, 3), np.array(spills, float).reshape(-1, 3)
    return {
        "checkpoint": Path(args.checkpoint).name, "scenes": args.scenes, "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "misses": {"n": len(m), "iou_before": round(float(m[:, 0].mean()), 3) if len(m) else None,
                   "iou_after_one": round(float(m[:, 1].mean()), 3) if len(m) else None,
                   "iou_after_two": round(float(m[:, 2].mean()), 3) if len(m) else None,
                   "fixed_by_one": round(float((m[:, 1] >= 0.5).mean()), 3) if len(m) else None,
                   "fixed_by_two": round(float((m[:, 2] >= 0.5).mean()), 3) if len(m) else None},
        "spills": {"n": len(s), "iou_before": round(float(s[:, 0].mean()), 3) if len(s) else None,
                   "iou_after_one": round(float(s[:, 1].mean()), 3) if len(s) else None,
                   "other_object_left_out": round(float((s[:, 2] < 0.1).mean()), 3) if len(s) else None},
        "redecode_s_median": round(statistics.median(times), 4) if times else None,
        "redecode_s_max": round(max(times), 4) if times else None, "redecodes": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    result = evaluate(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    m, s = result["misses"], result["spills"]
    print(f"{'case':<8}{'n':>5}{'IoU before':>12}{'after 1':>10}{'after 2':>10}{'fixed by 1':>12}{'fixed by 2':>12}")
    print(f"{'miss':<8}{m['n']:>5}{m['iou_before']:>12}{m['iou_after_one']:>10}{m['iou_after_two']:>10}"
          f"{m['fixed_by_one']:>12}{m['fixed_by_two']:>12}")
    print(f"{'spill':<8}{s['n']:>5}{s['iou_before']:>12}{s['iou_after_one']:>10}{'-':>10}"
          f"{s['other_object_left_out']:>12}{'-':>12}")
    print(f"re-decode on the cached view: median {result['redecode_s_median']} s, max {result['redecode_s_max']} s "
          f"over {result['redecodes']}")


if __name__ == "__main__":
    main()
