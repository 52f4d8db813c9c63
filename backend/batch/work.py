"""One part through the engine: the settings every part shares, and the worker that holds the loaded model.

The same ``PartWorker`` serves the local runner (one in this process) and the Ray runner (one per actor): it loads
the checkpoint once and then segments part after part. A part that fails is returned as an outcome with its error,
never raised, so the other parts go on; only an interruption (Ctrl+C) or a killed process stops a run.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from backend.batch.plan import DEFAULT_PART_SIZE, Part
from backend.engine import Engine, SegmentJob
from backend.errors import BackendError
from backend.protocol import Load, Window

# Settings that do not change a part's polygons, so a rerun may change them and still resume.
NOT_IN_FINGERPRINT = ("device", "precision", "clip_weights", "sam_weights")


def field_defaults(cls: type) -> dict[str, object]:
    """The default of each field of the dataclass ``cls`` that has one."""
    return {field.name: field.default for field in fields(cls) if field.default is not MISSING}


# The one source of the defaults: the engine's job (search) and the protocol's load request (model).
JOB_DEFAULTS = field_defaults(SegmentJob)
LOAD_DEFAULTS = field_defaults(Load)


@dataclass(frozen=True)
class BatchSettings:
    """What every part of a batch is segmented with (see ``backend.engine.SegmentJob`` for the search fields).

    The defaults are the engine's (``SegmentJob``) and the protocol's (``Load``), read from their dataclasses.

    Attributes:
        phrases: the referring phrases (one layer attribute ``query`` each).
        mode: "view" (each part is one picture) or "find-all" (every instance, tile by tile).
        resolution, bands, refine, tile_size, overlap, threshold, min_area_px, min_area_m2, simplify_tolerance,
            all_matches: as in ``SegmentJob``.
        checkpoint: trained checkpoint path (or imported name); config: a config name without one (tests).
        clip_weights, sam_weights, device, model_mode, precision: as in ``backend.loading.load_predictor``.
        part_size: side of a mosaic part in raster pixels (``backend.batch.plan``).
    """

    phrases: tuple[str, ...]
    mode: str = JOB_DEFAULTS["mode"]
    resolution: float | str | None = JOB_DEFAULTS["resolution"]
    bands: tuple[int, ...] | None = JOB_DEFAULTS["bands"]
    refine: str = JOB_DEFAULTS["refine"]
    tile_size: int | None = JOB_DEFAULTS["tile_size"]
    overlap: int | None = JOB_DEFAULTS["overlap"]
    threshold: float = JOB_DEFAULTS["threshold"]
    min_area_px: int = JOB_DEFAULTS["min_area_px"]
    min_area_m2: float | None = JOB_DEFAULTS["min_area_m2"]
    simplify_tolerance: float = JOB_DEFAULTS["simplify_tolerance"]
    all_matches: bool = JOB_DEFAULTS["all_matches"]
    checkpoint: str | None = LOAD_DEFAULTS["checkpoint"]
    config: str | None = LOAD_DEFAULTS["config"]
    clip_weights: str | None = LOAD_DEFAULTS["clip_weights"]
    sam_weights: str | None = LOAD_DEFAULTS["sam_weights"]
    device: str = LOAD_DEFAULTS["device"]
    model_mode: str = LOAD_DEFAULTS["mode"]
    precision: str = LOAD_DEFAULTS["precision"]
    part_size: int = DEFAULT_PART_SIZE

    def to_dict(self) -> dict:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> BatchSettings:
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)

    def fingerprint(self) -> dict:
        """The fields that decide the polygons: a manifest made with other values belongs to another batch."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IN_FINGERPRINT}


def part_outputs(parts_dir: str, part: Part) -> dict[str, str]:
    """The GeoPackage (and GeoJSON) a part writes: ``parts_dir/<part_id>.gpkg``."""
    return {"gpkg": str(Path(parts_dir) / f"{part.part_id}.gpkg"),
            "geojson": str(Path(parts_dir) / f"{part.part_id}.geojson")}


def worker_name() -> str:
    """Who ran a part: ``host:pid`` (a retried part shows another pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class PartWorker:
    """Holds one loaded model and segments parts with it."""

    def __init__(self, settings: BatchSettings, parts_dir: str, threads: int | None = None) -> None:
        """Load the model once.

        Args:
            settings: the batch's settings (model options included).
            parts_dir: the folder part outputs go to (created if missing).
            threads: torch CPU threads for this worker (None: torch's own choice, e.g. the CLI's).

        Raises:
            BackendError: when the model cannot be loaded (no part can run then).
        """
        from backend.loading import describe, load_predictor

        if threads:
            import torch

            torch.set_num_threads(threads)
        self.settings = settings
        self.parts_dir = parts_dir
        os.makedirs(parts_dir, exist_ok=True)
        predictor = load_predictor(checkpoint=settings.checkpoint, config=settings.config,
                                   clip_weights=settings.clip_weights, sam_weights=settings.sam_weights,
                                   device=settings.device, mode=settings.model_mode, precision=settings.precision)
        self.model_name = describe(predictor)
        self.checkpoint_name = (Path(settings.checkpoint).name if settings.checkpoint
                                else f"none ({settings.config})")
        self.engine = Engine(predictor)

    def run(self, part: Part, progress: Callable[[float, str, str], None] | None = None) -> dict:
        """Segment one part into ``parts_dir/<part_id>.gpkg``.

        A file left there by a run that was killed before recording the part is replaced: the parts folder
        belongs to the batch.

        Returns:
            The outcome: ``part_id``, ``status`` ("done" or "failed"), ``polygons``, ``seconds``, ``error``
            (None when done), ``model``, ``resolution`` (map units per pixel read), ``worker`` (host:pid).
        """
        settings = self.settings
        started = time.perf_counter()
        outcome = {"part_id": part.part_id, "status": "failed", "polygons": None, "error": None,
                   "model": self.model_name, "resolution": None, "worker": worker_name()}
        try:
            job = SegmentJob(raster=part.raster, phrases=settings.phrases, output_dir=self.parts_dir,
                             output_name=part.part_id, window=Window(pixels=part.pixels) if part.pixels else None,
                             resolution=settings.resolution, bands=settings.bands, mode=settings.mode,
                             refine=settings.refine, tile_size=settings.tile_size, overlap=settings.overlap,
                             threshold=settings.threshold, min_area_px=settings.min_area_px,
                             min_area_m2=settings.min_area_m2,
                             simplify_tolerance=settings.simplify_tolerance, overwrite=True,
                             model_name=self.model_name, checkpoint_name=self.checkpoint_name,
                             all_matches=settings.all_matches)
            result = self.engine.run(job, progress=progress)
        except BackendError as err:
            outcome["error"] = f"{err.code}: {err}"
        except Exception as err:  # noqa: BLE001 (recorded for this part; the other parts go on)
            outcome["error"] = f"internal: {type(err).__name__}: {err}"
        else:
            outcome.update(status="done", polygons=sum(s.count for s in result.phrases),
                           resolution=result.resolution_used)
        outcome["seconds"] = round(time.perf_counter() - started, 3)
        return outcome
