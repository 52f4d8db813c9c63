"""The bundled demo model through the real engine: a held-out synthetic split and the sample's phrases.

Run: ``python benchmarks/demo_eval.py [--checkpoint resources/models/demo-synthetic.safetensors] [--data data/demo]
[--split test] [--limit N] [--baseline OLD.safetensors] [--threads 1] [--precision auto|fp32|bf16]``.

``--precision`` is the compute precision the product's load takes (``load_predictor(precision=…)``; ``auto`` = bf16
where the CPU computes it natively, as the plugin and the CLI default to); the one chosen is written to the JSON.

Three parts, each with the product's defaults (automatic resolution, default refinement, one answer per phrase):

1. **Split**: every image of ``DATA/SPLIT.jsonl`` is written as a GeoTIFF (UTM 33N, at the GSD its record gives,
   0.5 m if none) and all its phrases go through ``backend.engine.Engine`` in one run; the written polygons are
   rasterised back onto the image grid and scored against the record's mask (gIoU, cIoU, Pr@0.5–0.9, per phrase
   type), to compare with ``training.evaluate`` on the same split.
2. **Sample**: the phrases of ``tests/fixtures/sample_phrases.json`` on ``resources/sample/sample.tif``, each scored
   against its object in ``sample_labels.tif``: IoU, polygon count, score.
3. **Time**: cold (model load + first query) and re-query on the sample, for the checkpoint and, with
   ``--baseline``, for another one in the same process, after the libraries are imported (the ratio is what the
   RESULTS table reports; a worker adds its interpreter start, ~2 s, to the first query only).

Writes ``benchmarks/results/demo_eval.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "demo_eval.json"
DEFAULT_CHECKPOINT = ROOT / "resources" / "models" / "demo-synthetic.safetensors"
SAMPLE = ROOT / "resources" / "sample"
SAMPLE_PHRASES = ROOT / "tests" / "fixtures" / "sample_phrases.json"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def rasterise(geojson: Path, query: str, transform, shape: tuple[int, int]) -> tuple[np.ndarray, int, float]:
    """The polygons of ``query`` in an engine GeoJSON burnt into an H×W bool mask, their count and best score."""
    from rasterio.features import rasterize

    features = [f for f in json.loads(geojson.read_text(encoding="utf-8"))["features"]
                if f["properties"]["query"] == query]
    if not features:
        return np.zeros(shape, bool), 0, 0.0
    mask = rasterize([(f["geometry"], 1) for f in features], out_shape=shape, transform=transform, fill=0,
                     dtype="uint8").astype(bool)
    return mask, len(features), max(float(f["properties"]["score"]) for f in features)


def scores(inter: np.ndarray, union: np.ndarray) -> dict[str, float]:
    """gIoU, cIoU and Pr@t (IoU > t, strict, as the paper's metric) in percent."""
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    out = {"gIoU": round(100 * float(iou.mean()), 2), "cIoU": round(100 * float(inter.sum() / union.sum()), 2)}
    out.update({f"Pr@{t}": round(100 * float((iou > t).mean()), 2) for t in THRESHOLDS})
    return {**out, "n": int(len(iou))}


def _geotiff(image: np.ndarray, gsd_m: float, folder: Path) -> Path:
    """Write an H×W×3 uint8 image as a UTM GeoTIFF at ``gsd_m`` (the sample's CRS and origin)."""
    import rasterio
    from rasterio.transform import from_origin

    from training.make_sample import SAMPLE_CRS, SAMPLE_ORIGIN

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scene.tif"
    profile = {"driver": "GTiff", "height": image.shape[0], "width": image.shape[1], "count": 3, "dtype": "uint8",
               "crs": SAMPLE_CRS, "transform": from_origin(*SAMPLE_ORIGIN, gsd_m, gsd_m)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.transpose(2, 0, 1))
    return path


def evaluate_split(engine, data: Path, split: str, limit: int | None, tmp: Path) -> dict:
    """Part 1: the split's records through the engine, grouped by image."""
    import rasterio

    from backend.engine import SegmentJob
    from training.data.io import read_image, read_mask
    from training.data.records import load_records

    records = load_records("jsonl", str(data), split, None)[:limit]
    lines = [json.loads(line) for line in (data / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
    gsd = {line["image"]: line.get("gsd_m", 0.5) for line in lines}
    by_image: dict[str, list] = defaultdict(list)
    for record in records:
        by_image[record.image].append(record)
    inter, union, types, categories, seconds = [], [], [], [], 0.0
    for index, (image_path, group) in enumerate(by_image.items()):
        image = read_image(image_path)
        rel = Path(image_path).resolve().relative_to(data.resolve()).as_posix()
        raster = _geotiff(image, float(gsd.get(rel, 0.5)), tmp / f"split{index}")
        with rasterio.open(raster) as src:
            transform, shape = src.transform, src.shape
        phrases = tuple(dict.fromkeys(r.sentence for r in group))
        start = time.perf_counter()
        result = engine.run(SegmentJob(raster=str(raster), phrases=phrases, output_dir=str(raster.parent)))
        seconds += time.perf_counter() - start
        for record in group:
            target = read_mask(record, *image.shape[:2]) == 1
            mask, _, _ = rasterise(Path(result.outputs["geojson"]), record.sentence, transform, shape)
            inter.append(int((mask & target).sum()))
            union.append(int((mask | target).sum()))
            types.append(record.phrase_type)
            categories.append(record.category)
    inter_a, union_a = np.array(inter, float), np.array(union, float)

    def per(labels: list[str]) -> dict[str, dict[str, float]]:
        labels_a = np.array(labels)
        return {k: scores(inter_a[labels_a == k], union_a[labels_a == k]) for k in sorted(set(labels))}

    return {"split": split, "images": len(by_image), **scores(inter_a, union_a), "per_phrase_type": per(types),
            "per_category": per(categories), "seconds": round(seconds, 1)}


def evaluate_sample(engine, tmp: Path) -> list[dict]:
    """Part 2: the fixture phrases on the sample, one engine run."""
    import rasterio

    from backend.engine import SegmentJob

    phrases = json.loads(SAMPLE_PHRASES.read_text(encoding="utf-8"))["phrases"]
    with rasterio.open(SAMPLE / "sample_labels.tif") as src:
        labels, transform = src.read(1), src.transform
    result = engine.run(SegmentJob(raster=str(SAMPLE / "sample.tif"), phrases=tuple(p["text"] for p in phrases),
                                   output_dir=str(tmp), output_name="sample"))
    rows = []
    for p in phrases:
        mask, count, score = rasterise(Path(result.outputs["geojson"]), p["text"], transform, labels.shape)
        target = labels == p["label"]
        iou = float((mask & target).sum() / max((mask | target).sum(), 1))
        rows.append({"phrase": p["text"], "type": p["type"], "label": p["label"], "iou": round(iou, 3),
                     "polygons": count, "score": round(score, 3)})
    return rows


def time_sample(checkpoint: Path, tmp: Path, precision: str) -> dict[str, float]:
    """Part 3: cold (load + first phrase) and re-query (a second phrase) on the sample, in seconds."""
    from backend.engine import Engine, SegmentJob
    from backend.loading import load_predictor

    start = time.perf_counter()
    engine = Engine(load_predictor(checkpoint=str(checkpoint), device="cpu", precision=precision))
    load = time.perf_counter() - start
    runs = []
    for name, phrase in (("first", "the red building at the top left"), ("again", "the large pond")):
        begin = time.perf_counter()
        engine.run(SegmentJob(raster=str(SAMPLE / "sample.tif"), phrases=(phrase,), output_dir=str(tmp),
                              output_name=f"{checkpoint.stem}-{name}"))
        runs.append(time.perf_counter() - begin)
    return {"load_s": round(load, 2), "cold_s": round(load + runs[0], 2), "first_query_s": round(runs[0], 2),
            "requery_s": round(runs[1], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="score only the first N records of the split")
    parser.add_argument("--baseline", type=Path, help="another checkpoint to time in the same run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="compute precision of the load, as the product's (auto: bf16 where native)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    import backend.model.build  # noqa: F401  (imports torch, open_clip and segment_anything before any timing)
    from backend.engine import Engine
    from backend.loading import load_predictor

    torch.set_num_threads(args.threads)
    doc: dict = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "checkpoint": args.checkpoint.name,
                 "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        # Each checkpoint writes into its own folder: both may have the same file name (model_best, …).
        timed = {"checkpoint": args.checkpoint, "baseline": args.baseline}
        doc["time"] = {}
        for role, checkpoint in timed.items():
            if checkpoint is not None:
                (tmp / role).mkdir()
                doc["time"][f"{role} {checkpoint.name}"] = time_sample(checkpoint, tmp / role, args.precision)
        predictor = load_predictor(checkpoint=str(args.checkpoint), device="cpu", precision=args.precision)
        doc["precision"] = {"requested": args.precision, "chosen": predictor.precision,
                            "reason": predictor.precision_reason}
        engine = Engine(predictor)
        doc["sample"] = evaluate_sample(engine, tmp)
        if (args.data / f"{args.split}.jsonl").is_file():
            doc["engine_split"] = evaluate_split(engine, args.data, args.split, args.limit, tmp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    print(f"precision {doc['precision']['chosen']} ({doc['precision']['reason']})")
    print(f"{'phrase':<46}{'type':<10}{'IoU':>6}{'polys':>6}{'score':>7}")
    for row in doc["sample"]:
        print(f"{row['phrase']:<46}{row['type']:<10}{row['iou']:>6.2f}{row['polygons']:>6}{row['score']:>7.2f}")
    hits = sum(r["iou"] >= 0.7 and r["polygons"] == 1 for r in doc["sample"])
    print(f"sample: {hits}/{len(doc['sample'])} phrases give one polygon with IoU >= 0.7")
    for name, t in doc["time"].items():
        print(f"time {name}: load {t['load_s']} s, cold {t['cold_s']} s, re-query {t['requery_s']} s")
    if "engine_split" in doc:
        s = doc["engine_split"]
        print(f"engine on {s['split']} ({s['n']} phrases, {s['images']} images): gIoU {s['gIoU']} cIoU {s['cIoU']} "
              f"Pr@0.5 {s['Pr@0.5']} | " + " ".join(f"{k} {v['gIoU']}" for k, v in s["per_phrase_type"].items())
              + " | " + " ".join(f"{k} {v['gIoU']}" for k, v in s["per_category"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
