"""Every part of a batch in this process, one loaded model, with a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable

from backend.batch.plan import Part
from backend.batch.work import BatchSettings, PartWorker


def run_local(parts: list[Part], settings: BatchSettings, parts_dir: str, record: Callable[[dict], None],
              threads: int | None = None, show_progress: bool = True) -> None:
    """Segment ``parts`` one after the other, calling ``record(outcome)`` as each ends.

    Args:
        parts: the parts still to do.
        settings: the batch's settings.
        parts_dir: where part outputs go.
        record: stores an outcome (the manifest's ``record``); called before the next part starts.
        threads: torch CPU threads (None: the machine's automatic choice, ``backend.environment.variables``).
        show_progress: draw a progress bar on stderr (parts done, and the current part's stage).
    """
    if not parts:
        return
    from tqdm import tqdm

    from backend.environment.variables import choose_threads

    worker = PartWorker(settings, parts_dir, threads=threads or choose_threads().count)
    with tqdm(total=len(parts), file=sys.stderr, unit="part", disable=not show_progress) as bar:
        for part in parts:
            def progress(fraction: float, stage: str, _message: str, part_id: str = part.part_id) -> None:
                bar.set_postfix_str(f"{part_id}: {stage} {fraction:.0%}", refresh=False)
            outcome = worker.run(part, progress=progress)
            record(outcome)
            bar.update(1)
