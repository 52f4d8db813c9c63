"""The batch manifest: ``<output>/manifest.json``, every part's window, status, polygon count, model and time.

It is rewritten atomically (a scratch file, then ``os.replace``) after every part, so a run killed at any moment
leaves a manifest that says exactly which parts are done: a rerun of the same command skips those and runs the
rest (failed parts included). A manifest written with other settings or another plan belongs to another batch
and is refused rather than mixed with this one.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from backend.batch.plan import Part
from backend.errors import BackendError

FORMAT = "rsrefseg2-batch"
VERSION = 1
MANIFEST_NAME = "manifest.json"
STATUSES = ("pending", "done", "failed")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Manifest:
    """The parts of one batch and what became of each; ``save()`` after every change."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path = path
        self.data = data

    @classmethod
    def open(cls, output_dir: str, parts: list[Part], fingerprint: dict) -> Manifest:
        """The folder's manifest, created for ``parts`` if there is none.

        Raises:
            BackendError: ``bad_request`` when the folder's manifest is unreadable or belongs to a batch with
                other settings or other parts.
        """
        path = Path(output_dir) / MANIFEST_NAME
        if not path.exists():
            entries = [{**p.to_dict(), "status": "pending", "polygons": None, "seconds": None, "model": None,
                        "error": None, "resolution": None, "run": None, "finished": None, "worker": None}
                       for p in parts]
            return cls(path, {"format": FORMAT, "version": VERSION, "settings": fingerprint, "runs": [],
                              "parts": entries, "summary": {}})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ok = data.get("format") == FORMAT and isinstance(data.get("parts"), list)
        except (OSError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise BackendError("bad_request", f"{str(path)!r} is not a readable batch manifest",
                               "choose another output folder (or move the file away to start this batch afresh)")
        if data.get("settings") != fingerprint:
            changed = sorted(k for k in set(fingerprint) | set(data.get("settings") or {})
                             if fingerprint.get(k) != (data.get("settings") or {}).get(k))
            raise BackendError("bad_request", f"the output folder holds a batch made with other settings "
                               f"({', '.join(changed)} differ)",
                               "rerun with the same options to resume it, or choose another output folder")
        planned = [p.to_dict() for p in parts]
        recorded = [{k: e.get(k) for k in ("part_id", "raster", "pixels", "source")} for e in data["parts"]]
        if [_comparable(p) for p in planned] != [_comparable(p) for p in recorded]:
            raise BackendError("bad_request", "the output folder holds a batch over other inputs",
                               "rerun with the same inputs to resume it, or choose another output folder")
        return cls(path, data)

    def todo(self) -> list[Part]:
        """The parts a run still has to do: every part not done (pending, failed, or cut short by a kill)."""
        return [Part.from_dict(e) for e in self.data["parts"] if e["status"] != "done"]

    def entry(self, part_id: str) -> dict:
        for entry in self.data["parts"]:
            if entry["part_id"] == part_id:
                return entry
        raise KeyError(part_id)

    def start_run(self, runner: str) -> int:
        """Record a new run (``runner`` says how it runs); return its number (1 for the first)."""
        self.data["runs"].append({"runner": runner, "started": _now(), "finished": None})
        self.save()
        return len(self.data["runs"])

    def record(self, outcome: dict, run: int) -> None:
        """Store a part's outcome (``backend.batch.work.PartWorker.run``) and save."""
        entry = self.entry(outcome["part_id"])
        entry.update({k: outcome.get(k) for k in ("status", "polygons", "seconds", "model", "error", "resolution",
                                               "worker")})
        entry.update(run=run, finished=_now())
        self.save()

    def finish_run(self, summary: dict) -> None:
        self.data["runs"][-1]["finished"] = _now()
        self.data["summary"] = summary
        self.save()

    def save(self) -> None:
        """Write the manifest atomically: a reader (or a kill) never sees half of it."""
        scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}")
        try:
            scratch.write_text(json.dumps(self.data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            os.replace(scratch, self.path)
        except OSError as err:
            scratch.unlink(missing_ok=True)
            raise BackendError("bad_request", f"cannot write the manifest {str(self.path)!r}: {err.strerror}",
                               "check the output folder's free space and permissions") from err


def _comparable(entry: dict) -> tuple:
    pixels = entry.get("pixels")
    return entry["part_id"], entry["raster"], None if pixels is None else tuple(pixels), entry["source"]
