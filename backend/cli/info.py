"""``python -m backend info [--json]``: the diagnostics users paste into bug reports.

Every probe is guarded: a missing or broken library shows up as its error text instead of crashing, because
this command is most needed exactly when the installation is broken (only the standard library and the backend's
own stdlib-only modules are imported before the probes). The first line is a readiness summary ("Ready: Demo
model on cpu, fp32" or "Not ready: this Python lacks numpy, torch: …") with the details below it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.cli.segment import DEMO_CHECKPOINT
from backend.environment.packages import lacking_packages, missing_modules
from backend.environment.variables import choose_threads
from backend.protocol import weights_dir


def _probe(fn: Callable[[], Any]) -> Any:
    """``fn()``, or ``{"error": "..."}`` if it raises (an import error, a broken driver)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 (diagnostics report every failure)
        return {"error": f"{type(exc).__name__}: {exc}"}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    devices = [{"index": i, "name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
                "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
               for i in range(torch.cuda.device_count())] if cuda else []
    mps = getattr(torch.backends, "mps", None)
    return {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "cuda_devices": devices,
        "mps_available": bool(mps and mps.is_available()),
        "threads": torch.get_num_threads(),
    }


def _pyogrio() -> dict[str, str]:
    import pyogrio

    return {"version": pyogrio.__version__, "gdal": ".".join(map(str, pyogrio.__gdal_version__))}


def _geo() -> dict[str, Any]:
    import rasterio

    return {"rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__, "pyogrio": _probe(_pyogrio),
            "shapely": _version("shapely")}


def _precision(cpuinfo: Path) -> dict[str, str]:
    """The compute precision a model loaded with device and precision "auto" gets here, and why."""
    from backend.model.device import choose_precision, select_device

    device = select_device("auto")
    precision, reason = choose_precision(device, "auto", cpuinfo)
    return {"precision": precision, "precision_reason": reason, "device": str(device)}


def collect(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Everything ``info`` reports, as JSON-ready data; ``cpuinfo`` is where the CPU flags are read (torch is
    imported inside the probes, so a broken torch is reported, not fatal)."""
    precision = _probe(lambda: _precision(cpuinfo))
    missing = missing_modules()
    return {
        "summary": readiness(missing, precision),
        "missing_packages": missing,
        "backend": _version("rsrefseg2-qgis"),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "torch": _probe(_torch),
        "worker_threads": _probe(lambda: str(choose_threads())),
        "open_clip": _version("open_clip_torch"),
        "segment_anything": _version("segment-anything"),
        "numpy": _version("numpy"),
        "geo": _probe(_geo),
        "weights_folder": str(weights_dir()),
        "weights": _probe(_weights),
        "precision": precision.get("precision", precision.get("error")),
        "precision_reason": precision.get("precision_reason", ""),
    }


def readiness(missing: list[str], precision: dict[str, Any]) -> str:
    """The one-line verdict: what answers a query here, or what is missing and what to do."""
    if missing:
        lacking = lacking_packages(missing)
        return f"Not ready: {lacking.message}: {lacking.hint}."
    if "error" in precision:
        return f"Not ready: PyTorch does not work here ({precision['error']})."
    model = "Demo model" if DEMO_CHECKPOINT.is_file() else "no bundled model (give --checkpoint)"
    return f"Ready: {model} on {precision.get('device', 'cpu')}, {precision['precision']}"


def _weights() -> dict[str, dict[str, str | None]]:
    """Each known weights file or tokenizer folder: its path (None if absent) and status, from the record; one
    not installed is "optional" (only zero-shot mode and full-size checkpoints need base weights)."""
    from backend.weights import manager as weights

    return {name: {"kind": weights.REGISTRY[name].kind, "path": str(p.path) if p.path else None,
                   "status": "optional" if p.status == "missing" else p.status}
            for name, p in weights.inventory().items()}


def format_text(info: dict[str, Any]) -> str:
    """The human-readable report: one ``key: value`` line each, nested sections indented."""
    lines: list[str] = []

    def emit(key: str, value: Any, indent: int) -> None:
        pad = "  " * indent
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            for k, v in value.items():
                emit(k, v, indent + 1)
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: {', '.join(json.dumps(v) for v in value) if value else 'none'}")
        else:
            lines.append(f"{pad}{key}: {'-' if value is None else value}")

    for key, value in info.items():
        if key == "weights" and "error" not in value:
            lines.append("weights:")
            lines.extend(f"  {n}: {_weights_line(n, row)}" for n, row in value.items())
        else:
            emit(key, value, 0)
    return "\n".join(lines)


def _weights_line(name: str, row: dict[str, str | None]) -> str:
    if row["path"] is None:
        return f"optional, not installed (`python -m backend weights download {name}`)"
    return f"{row['path']} ({row['status']})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--json`` to ``parser``."""
    parser.add_argument("--json", action="store_true", help="machine-readable output (for the plugin)")


def run(args: argparse.Namespace) -> int:
    """Print the report; returns 0."""
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_text(info))
    return 0
