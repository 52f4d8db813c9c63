"""How many CPU threads torch may use in the worker: chosen deliberately instead of torch's default.

torch starts one intra-op thread per core it sees. On a small or busy machine those threads fight each other and
every other program for the same cores, which measured many times slower than a single thread
(``benchmarks/threads_bench.py``). The count comes from ``--threads N``, else ``RSREFSEG2_THREADS``, else
automatically from the machine: 1 on machines with at most 2 logical CPUs, else the physical cores that the load
average leaves idle (at least 1, at most 8: beyond that the small matrices of one query gain little).

Standard library only: ``backend info`` reports the choice without importing torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "RSREFSEG2_THREADS"
MAX_AUTO_THREADS = 8


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why it was chosen (``reason`` is shown by ``backend info`` and the worker log)."""

    count: int
    reason: str

    def __str__(self) -> str:
        return f"{self.count} ({self.reason})"


def logical_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def physical_cores(topology: Path = Path("/sys/devices/system/cpu")) -> int | None:
    """Physical cores among this process's CPUs, from Linux's CPU topology (None where it is not available)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = set()
    for cpu in os.sched_getaffinity(0):
        siblings = topology / f"cpu{cpu}" / "topology" / "thread_siblings_list"
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            return None
    return len(cores) or None


def _load_average() -> float:
    """The 1-minute load average (0 where the platform has none, e.g. Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def automatic_threads() -> ThreadChoice:
    """The thread count for this machine as it is loaded now."""
    logical = logical_cpus()
    if logical <= 2:
        return ThreadChoice(1, f"automatic: {logical} logical CPU(s)")
    physical = physical_cores() or logical
    load = _load_average()
    idle = math.floor(logical - load)
    count = max(1, min(physical, MAX_AUTO_THREADS, idle))
    return ThreadChoice(count, f"automatic: {physical} physical cores, {logical} logical, load average {load:.1f}")


def parse_threads(text: str | None, source: str) -> int:
    """A thread setting as an integer >= 0 (0 or empty = automatic).

    Raises:
        ValueError: naming ``source`` when ``text`` is not a non-negative integer.
    """
    if text is None or not text.strip():
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{source} must be a whole number >= 0 (0 = automatic), got {text!r}")
    return value


def choose_threads(requested: int | None = None) -> ThreadChoice:
    """The worker's thread count.

    Args:
        requested: ``--threads`` (None or 0: fall back to ``RSREFSEG2_THREADS``, then automatic).

    Returns:
        The count and its reason.

    Raises:
        ValueError: when ``requested`` is negative or ``RSREFSEG2_THREADS`` is not a whole number >= 0.
    """
    if requested is not None and requested < 0:
        raise ValueError(f"--threads must be >= 0 (0 = automatic), got {requested}")
    if requested:
        return ThreadChoice(requested, "--threads")
    from_env = parse_threads(os.environ.get(ENV_VAR), ENV_VAR)
    if from_env:
        return ThreadChoice(from_env, ENV_VAR)
    return automatic_threads()
