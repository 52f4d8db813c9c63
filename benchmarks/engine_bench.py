"""Engine benchmark: per-stage times and peak RSS, cold query vs re-query, on the sample and a big raster.

Run: ``python benchmarks/engine_bench.py [--configs tiny rsrefseg2-b16] [--big-side 8000]``.
Each scenario runs in its own child process so its peak RSS is its own. Models are random-init (no weights
are downloaded): the times are what inference costs, the masks mean nothing. Writes
``benchmarks/results/engine_bench.json`` and prints a table.

Stages: read, normalise, encode (CLIP + SAM image encoders inside ``set_image``), predict (text encoder,
prompter and mask decoder), stitch, vectorize, write. The split of ``encode`` into CLIP and SAM, and of a
query into text+prompter+decoder, is measured separately on one model-input-sized image.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE = ROOT / "resources" / "sample" / "sample.tif"
RESULTS = ROOT / "benchmarks" / "results" / "engine_bench.json"
PHRASES = ("the large white storage tank", "the red building")
SCENARIOS = ("sample-view", "big-view", "big-find-all")


def write_big_raster(path: Path, side: int) -> Path:
    """A side×side 3-band uint8 GeoTIFF (UTM, 0.5 m), written block by block to keep memory low."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0),
               "tiled": True, "blockxsize": 512, "blockysize": 512}
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, side, 1024):
            h = min(1024, side - row)
            block = (rng.random((3, h, side), dtype=np.float32) * 80 + 60).astype(np.uint8)
            block[:, : h // 4, : side // 8] = 235  # bright patches for the model to fixate on
            dst.write(block, window=Window(0, row, side, h))
    return path


def model_split(predictor) -> dict[str, float]:
    """Seconds for CLIP image encode, SAM image encode and one query's text+prompter+decoder at input size."""
    import torch

    model = predictor.model
    size = int(predictor.input_size)
    images = torch.rand(1, 3, size, size, device=next(model.parameters()).device)
    out: dict[str, float] = {}
    with torch.inference_mode():
        for name, func in (("clip_encode", lambda: model.clip_encoder.encode_image_dense(images)),
                           ("sam_encode", lambda: model.sam_head.encode_image(images))):
            func()
            start = time.perf_counter()
            func()
            out[name] = time.perf_counter() - start
        embeddings = model.encode_images(images)
        model.decode(embeddings, [PHRASES[0]])
        start = time.perf_counter()
        model.decode(embeddings, [PHRASES[0]])
        out["prompter_decoder"] = time.perf_counter() - start
    return out


def one(config: str, raster: str, mode: str, tile_size: int) -> dict:
    """Run one scenario in this process: cold query, then a re-query of another phrase on the same view."""
    import torch

    from backend.engine import Engine, SegmentJob
    from backend.loading import CACHED_IMAGES
    from backend.model.build import build_model
    from backend.model.config import load_config
    from backend.predictor import ReferringPredictor

    torch.manual_seed(0)
    start = time.perf_counter()
    # The worker's cache size, so a re-query on a big view reuses every tile's embeddings as it does in QGIS.
    predictor = ReferringPredictor(build_model(load_config(config)).eval(), device="cpu", cache_size=CACHED_IMAGES)
    load_s = time.perf_counter() - start
    engine = Engine(predictor)
    runs = {}
    with tempfile.TemporaryDirectory() as out:
        for label, phrases in (("cold", PHRASES[:1]), ("requery", PHRASES[1:])):
            job = SegmentJob(raster=raster, phrases=phrases, output_dir=out, output_name=label, mode=mode,
                             tile_size=tile_size, overlap=tile_size // 8, threshold=0.5)
            result = engine.run(job)
            runs[label] = {"timings": result.timings, "tiles": result.tiles,
                           "polygons": sum(p.count for p in result.phrases)}
    return {"config": config, "raster": Path(raster).name, "mode": mode, "tile_size": tile_size,
            "threads": torch.get_num_threads(), "load_s": round(load_s, 3), "runs": runs,
            "split": model_split(predictor),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def table(rows: list[dict]) -> str:
    """A fixed-width table of the scenarios."""
    stages = ("read", "normalise", "encode", "predict", "stitch", "vectorize", "write", "total")
    head = f"{'config':<15}{'raster':<22}{'mode':<9}{'run':<8}{'tiles':>6}" + "".join(f"{s:>10}" for s in stages)
    lines = [head + f"{'RSS MiB':>9}", "-" * (len(head) + 9)]
    for row in rows:
        for label, run in row["runs"].items():
            times = "".join(f"{run['timings'].get(s, 0.0):>10.3f}" for s in stages)
            lines.append(f"{row['config']:<15}{row['raster']:<22}{row['mode']:<9}{label:<8}{run['tiles']:>6}"
                         f"{times}{row['peak_rss_mib']:>9}")
        split = "  ".join(f"{k} {v:.4f}s" for k, v in row["split"].items())
        lines.append(f"{'':<15}model split at input size: {split}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["tiny"])
    parser.add_argument("--big-side", type=int, default=8000)
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--one", nargs=4, metavar=("CONFIG", "RASTER", "MODE", "TILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.one[2], int(args.one[3]))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / f"synthetic{args.big_side}.tif"
        if any(s.startswith("big") for s in args.scenarios):
            write_big_raster(big, args.big_side)
        plan = {"sample-view": (SAMPLE, "view"), "big-view": (big, "view"), "big-find-all": (big, "find-all")}
        for config in args.configs:
            for scenario in args.scenarios:
                raster, mode = plan[scenario]
                child = subprocess.run([sys.executable, __file__, "--one", config, str(raster), mode,
                                        str(args.tile_size)], capture_output=True, text=True, check=True)
                rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
                print(table(rows[-1:]), flush=True)
    # Merge with earlier results so separate invocations (e.g. a slow config on the sample only) accumulate.
    previous = json.loads(RESULTS.read_text())["scenarios"] if RESULTS.exists() else []
    fresh = {(r["config"], r["raster"], r["mode"]) for r in rows}
    rows = [r for r in previous if (r["config"], r["raster"], r["mode"]) not in fresh] + rows
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"cpu_threads": __import__("torch").get_num_threads(), "scenarios": rows},
                                  indent=2))
    print("\n" + table(rows))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
