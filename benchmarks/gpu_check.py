"""GPU check (issue 27): the paper model on one NVIDIA GPU, fp32 against bf16, in minutes, nothing downloaded.

Run: ``bash benchmarks/gpu_check.sh`` (wraps ``python benchmarks/gpu_check.py`` in a 5-minute limit), or
``python benchmarks/gpu_check.py [--device cuda] [--config rsrefseg2-paper] [--views 8] [--repeats 3]
[--tiles-per-side 3] [--precisions fp32,bf16] [--out benchmarks/results/gpu_check.json]``. A dry run on the CPU
with a small config: ``python benchmarks/gpu_check.py --device cpu --config tiny`` (what the tests run).

What it does, with the product's own classes:

1. **Load**: ``build_model`` of the config with random weights, built directly on the device (frozen weights in
   the config's storage dtype, bf16 for the paper model as the authors released them); SigLIP 2's Gemma
   tokenizer, when not installed, is the stand-in ``tokenizer.json`` of ``benchmarks/model_bench.py``. One model
   serves one ``ReferringPredictor`` per precision (the precision is the predictor's, as in the worker).
2. Per precision: **cold** ``set_image`` (the first in that precision) and ``predict`` on a view of the model's
   input size (1024² for the paper model), then warm medians over ``--repeats`` new views / phrases.
3. **Views**, end to end on ``--views`` different views: one after the other through the predictor
   (``set_image`` + ``predict``, what a dock query costs per view), and as one batch through the model
   (``encode_images`` + ``decode`` on B views and B phrases: what batching would give; the product does not batch
   views).
4. **Find-all**: the engine's tiled path as the product runs it (``Engine.run``, ``mode="find-all"``, native
   resolution, its default tile grid: tiles of the model's input with an eighth of overlap) on a GeoTIFF that
   holds ``--tiles-per-side``² tiles (default 3 × 3). The engine does **not** batch tiles: it encodes and decodes
   one tile after the other (``backend/passes.py: find_all_pass``), so tiles/s is that loop's rate.
5. Memory: the weights' own size; the peak while building (random init makes frozen weights in fp32 before they
   are stored in bf16, which loading a checkpoint does not); per precision the peak of everything above,
   ``torch.cuda.max_memory_allocated`` on CUDA (weights included), the process's peak RSS on CPU.

Prints one table beside the paper's figure (5.4 FPS on an RTX 4090, RSRefSeg 2 paper) and writes
``benchmarks/results/gpu_check.json``. Without a CUDA device ``--device cuda`` stops at once with ``error:`` and
``hint:`` lines (the backend's exit status for device errors).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "gpu_check.json"
PAPER_FPS = 5.4  # RSRefSeg 2 paper: inference speed on one RTX 4090
PAPER_GPU = "RTX 4090"


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds(fn: Callable[[], object], device) -> float:
    """Wall seconds of ``fn()``, the device's queued work included."""
    start = time.perf_counter()
    fn()
    _synchronize(device)
    return time.perf_counter() - start


def _peak_memory_mib(device) -> float:
    """Peak device memory on CUDA (since the last reset), else the process's peak RSS, in MiB."""
    import torch

    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _weights_mib(model) -> float:
    """MiB the model's parameters and buffers hold (bf16 frozen weights count two bytes each)."""
    tensors = [*model.parameters(), *model.buffers()]
    return round(sum(t.numel() * t.element_size() for t in tensors) / 2**20, 1)


def _reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def require_device(spec: str):
    """The torch device for ``spec``, refused before anything is built when it is not available here.

    Raises:
        BackendError("device"): e.g. ``cuda`` on a machine without a CUDA device or without a CUDA build of torch.
    """
    from backend.errors import BackendError
    from backend.model.device import select_device

    try:
        return select_device(spec)
    except BackendError as exc:
        raise BackendError("device", f"the GPU check needs a CUDA device: {exc.message}",
                           "run it on a machine with an NVIDIA GPU and a CUDA build of PyTorch (nvidia-smi lists "
                           "the GPU), or try it on the CPU with --device cpu --config tiny") from exc


def load(config_name: str, device, scratch: Path) -> tuple[Any, float, str]:
    """Build the config's model with random weights directly on ``device``.

    Returns:
        (model in eval mode on ``device``, seconds, tokenizer label).
    """
    import torch
    from model_bench import with_available_tokenizer

    from backend.model import build_model, load_config

    config, tokenizer = with_available_tokenizer(load_config(config_name), scratch)
    start = time.perf_counter()
    with torch.device(device):
        model = build_model(config)
    model = model.to(device).eval()
    _synchronize(device)
    return model, round(time.perf_counter() - start, 2), tokenizer


def _views(count: int, side: int, seed: int) -> list[np.ndarray]:
    """``count`` random H×W×3 uint8 views of ``side``² (random weights: the content does not matter)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(count)]


def _batched(predictor, views: list[np.ndarray], texts: list[str]) -> None:
    """``encode_images`` + ``decode`` of all views and phrases in one batch (B×3×S×S), under the precision."""
    import torch

    from backend.model.device import autocast
    from backend.model.transforms import resize_and_pad

    size, keep = predictor.model.config.input_size, predictor.model.config.keep_ratio
    batch = torch.stack([resize_and_pad(view, size, keep)[0] for view in views]).to(predictor.device)
    with torch.inference_mode(), autocast(predictor.device, predictor.precision):
        predictor.model.decode(predictor.model.encode_images(batch), texts)


def _geotiff(path: Path, side: int, seed: int) -> Path:
    """A random RGB GeoTIFF of ``side``² pixels, UTM 33N at 0.5 m."""
    import rasterio
    from rasterio.transform import from_origin

    image = _views(1, side, seed)[0]
    profile = {"driver": "GTiff", "height": side, "width": side, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(600_000, 5_340_000, 0.5, 0.5)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.transpose(2, 0, 1))
    return path


def measure(model, device, precision: str, views: int, repeats: int, tiles_per_side: int, texts: list[str],
            scratch: Path) -> dict:
    """Every figure of one precision (see the module docstring); seconds, images or tiles per second, MiB."""
    import torch

    from backend.engine import Engine, SegmentJob
    from backend.predictor import ReferringPredictor

    _reset_peak(device)
    predictor = ReferringPredictor(model, device=device, precision=precision, cache_size=views + repeats + 2)
    side = predictor.input_size
    seed = {"fp32": 1, "bf16": 2}.get(precision, 3)
    first, *more = _views(1 + repeats, side, seed)
    row: dict[str, Any] = {"precision": predictor.precision, "reason": predictor.precision_reason}
    row["cold_set_image_s"] = round(_seconds(lambda: predictor.set_image(first), device), 3)
    row["cold_predict_s"] = round(_seconds(lambda: predictor.predict(texts[0]), device), 3)
    row["set_image_s"] = round(statistics.median(_seconds(lambda v=v: predictor.set_image(v), device)
                                                 for v in more), 3)
    row["predict_s"] = round(statistics.median(_seconds(lambda t=t: predictor.predict(t), device)
                                               for t in (texts * repeats)[:repeats]), 3)

    batch = _views(views, side, seed + 10)
    phrases = [texts[i % len(texts)] for i in range(views)]

    def one_by_one() -> None:
        for view, phrase in zip(batch, phrases, strict=True):
            predictor.set_image(view)
            predictor.predict(phrase)

    row["views_one_by_one_per_s"] = round(views / _seconds(one_by_one, device), 2)
    _batched(predictor, batch[:1], phrases[:1])  # the batch path's own first call (kernels for its shapes)
    try:
        row["views_batched_per_s"] = round(views / _seconds(lambda: _batched(predictor, batch, phrases), device), 2)
    except torch.OutOfMemoryError:
        row["views_batched_per_s"] = None
        row["views_batched_note"] = f"out of memory for a batch of {views}"
        torch.cuda.empty_cache()

    raster_side = side + (tiles_per_side - 1) * (side - side // 8)  # the engine's default overlap: an eighth
    raster = _geotiff(scratch / f"find-all-{precision}.tif", raster_side, seed + 20)
    engine = Engine(predictor)
    start = time.perf_counter()
    result = engine.run(SegmentJob(raster=str(raster), phrases=(texts[0],), output_dir=str(scratch),
                                   output_name=f"find-all-{precision}", mode="find-all", resolution=None))
    seconds = time.perf_counter() - start
    row["find_all"] = {"raster_px": [raster_side, raster_side], "tiles": result.tiles, "seconds": round(seconds, 2),
                       "tiles_per_s": round(result.tiles / seconds, 2),
                       "encode_s": round(result.timings.get("encode", 0.0), 2),
                       "predict_s": round(result.timings.get("predict", 0.0), 2), "batched": False}
    row["peak_memory_MiB"] = _peak_memory_mib(device)
    return row


def _table(doc: dict) -> str:
    """The printed table: one column per precision, the paper's figure beside the images/s rows."""
    rows = doc["precisions"]
    names = list(rows)
    memory = "peak VRAM MiB (max_memory_allocated)" if doc["device"].startswith("cuda") else "peak RSS MiB"
    paper = f"paper: {PAPER_FPS} FPS ({PAPER_GPU})"
    lines = [f"{doc['config']} on {doc['device_name']} ({doc['device']}), view {doc['view_px']}², random weights, "
             f"tokenizer: {doc['tokenizer']}",
             f"load (build on the device): {doc['load_s']} s; weights {doc['weights_MiB']} MiB, peak while building "
             f"{doc['peak_load_MiB']} MiB",
             f"{'':<38}" + "".join(f"{name:>12}" for name in names)]

    def line(label: str, values: list[Any], note: str = "") -> None:
        shown = "".join(f"{'-' if v is None else v:>12}" for v in values)
        lines.append(f"{label:<38}{shown}{'   ' + note if note else ''}")

    line("cold set_image s", [rows[n]["cold_set_image_s"] for n in names])
    line("cold predict s", [rows[n]["cold_predict_s"] for n in names])
    line("set_image s (warm median)", [rows[n]["set_image_s"] for n in names])
    line("predict s (warm median)", [rows[n]["predict_s"] for n in names])
    line(f"images/s, {doc['views']} views one by one", [rows[n]["views_one_by_one_per_s"] for n in names], paper)
    line(f"images/s, {doc['views']} views in one batch", [rows[n]["views_batched_per_s"] for n in names], paper)
    tiles = rows[names[0]]["find_all"]
    line(f"find-all tiles/s ({tiles['tiles']} tiles, not batched)", [rows[n]["find_all"]["tiles_per_s"]
                                                                      for n in names])
    line(memory, [rows[n]["peak_memory_MiB"] for n in names])
    lines += [f"{name}: {rows[name]['reason']}" for name in names]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N; cpu for a dry run (with a small --config)")
    parser.add_argument("--config", default="rsrefseg2-paper", help="model config name (tiny for a dry run)")
    parser.add_argument("--views", type=int, default=8, help="views per images/s figure")
    parser.add_argument("--repeats", type=int, default=3, help="warm set_image / predict calls per median")
    parser.add_argument("--tiles-per-side", type=int, default=3, help="find-all raster: this many tiles a side")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from backend.errors import BackendError

    try:
        device = require_device(args.device)
        if min(args.views, args.repeats, args.tiles_per_side) < 1:
            raise BackendError("bad_request", "--views, --repeats and --tiles-per-side must be at least 1",
                               "e.g. --views 8 --repeats 3 --tiles-per-side 3")
    except BackendError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}", file=sys.stderr)
        return exc.exit_code

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = ["the large white storage tank", "a red-roofed building near the road", "the pond"]
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        _reset_peak(device)
        model, load_s, tokenizer = load(args.config, device, scratch)
        doc: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
            "config": args.config, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or platform.machine(),
            "view_px": model.config.input_size, "views": args.views, "repeats": args.repeats,
            "tokenizer": tokenizer, "load_s": load_s, "weights_MiB": _weights_mib(model),
            "peak_load_MiB": _peak_memory_mib(device),
            "paper": {"fps": PAPER_FPS, "gpu": PAPER_GPU},
            "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "load_average_1_5_15": os.getloadavg(), "precisions": {}}
        for precision in args.precisions.split(","):
            doc["precisions"][precision] = measure(model, device, precision, args.views, args.repeats,
                                                   args.tiles_per_side, texts, scratch)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(_table(doc))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
