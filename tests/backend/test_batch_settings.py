"""``BatchSettings`` takes its defaults from the engine's ``SegmentJob`` and the protocol's ``Load`` (one source)."""

from __future__ import annotations

from dataclasses import fields

from backend.batch.work import BatchSettings
from backend.engine import SegmentJob
from backend.protocol import Load

# BatchSettings' name → (the dataclass that owns the default, its field there)
OWNERS = {"mode": (SegmentJob, "mode"), "resolution": (SegmentJob, "resolution"), "bands": (SegmentJob, "bands"),
          "refine": (SegmentJob, "refine"), "tile_size": (SegmentJob, "tile_size"),
          "overlap": (SegmentJob, "overlap"), "threshold": (SegmentJob, "threshold"),
          "min_area_px": (SegmentJob, "min_area_px"), "min_area_m2": (SegmentJob, "min_area_m2"),
          "simplify_tolerance": (SegmentJob, "simplify_tolerance"),
          "all_matches": (SegmentJob, "all_matches"), "checkpoint": (Load, "checkpoint"), "config": (Load, "config"),
          "clip_weights": (Load, "clip_weights"), "sam_weights": (Load, "sam_weights"), "device": (Load, "device"),
          "model_mode": (Load, "mode"), "precision": (Load, "precision")}


def test_every_default_but_the_phrases_and_part_size_is_the_engines_or_the_protocols() -> None:
    settings = BatchSettings(phrases=("the pond",))
    assert {f.name for f in fields(BatchSettings)} - set(OWNERS) == {"phrases", "part_size"}
    for name, (owner, field_name) in OWNERS.items():
        (owned,) = [f for f in fields(owner) if f.name == field_name]
        assert getattr(settings, name) == owned.default, name
