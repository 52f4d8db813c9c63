"""The worker process's settings: how many CPU threads torch may use (chosen deliberately instead of torch's
default) and how much it logs, each from its command line or environment, checked before anything is served.

torch starts one intra-op thread per core it sees. On a small or busy machine those threads fight each other and
every other program for the same cores, which measured many times slower than a single thread
(``benchmarks/threads_bench.py``). The count comes from ``--threads N``, else ``RSREFSEG2_THREADS``, else
automatically from the machine: 1 on machines with at most 2 logical CPUs, else the physical cores that the load
average leaves idle (at least 1, at most 8: beyond that the small matrices of one query gain little).

``RSREFSEG2_LOG_LEVEL`` names the worker's log level. A value of either variable that cannot be used is neither a
start-up traceback (which the plugin never shows) nor a silent fallback: the worker starts with the defaults,
logs the problem, and answers every ``load`` with the ``environment`` error naming the variable and its allowed
values (``read_worker_environment``), which the plugin shows the user.

Standard library only: ``backend info`` reports the choice without importing torch.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from backend.errors import BackendError

ENV_VAR = "RSREFSEG2_THREADS"
MAX_AUTO_THREADS = 8
# Most threads a setting may ask for: beyond any machine's cores, and far below what a thread pool overflows at.
MAX_THREADS = 1024


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
    """A thread setting as an integer from 0 to ``MAX_THREADS`` (0 or empty = automatic).

    Raises:
        BackendError: ``environment`` naming ``source`` and the allowed values when ``text`` is not a whole
            number in that range (e.g. "abc", "-3", or a number past 2^63 that no thread pool can take).
    """
    if text is None or not text.strip():
        return 0
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_THREADS:
        shown = text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"
        raise BackendError("environment", f"{source} is {shown!r}, not a whole number from 0 to {MAX_THREADS}",
                           f"set {source} to the number of CPU threads torch may use (1 to {MAX_THREADS}), "
                           f"to 0 for an automatic choice, or unset it")
    return value


def choose_threads(requested: int | None = None) -> ThreadChoice:
    """The worker's thread count.

    Args:
        requested: ``--threads`` (None or 0: fall back to ``RSREFSEG2_THREADS``, then automatic).

    Returns:
        The count and its reason.

    Raises:
        BackendError: ``bad_request`` when ``requested`` is outside 0…``MAX_THREADS``; ``environment`` when
            ``RSREFSEG2_THREADS`` is not a whole number in that range.
    """
    if requested is not None and not 0 <= requested <= MAX_THREADS:
        raise BackendError("bad_request", f"--threads {requested} is not a whole number from 0 to {MAX_THREADS}",
                           "give the number of CPU threads torch may use, or 0 for an automatic choice")
    if requested:
        return ThreadChoice(requested, "--threads")
    from_env = parse_threads(os.environ.get(ENV_VAR), ENV_VAR)
    if from_env:
        return ThreadChoice(from_env, ENV_VAR)
    return automatic_threads()


LOG_LEVEL_ENV = "RSREFSEG2_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LOG_LEVEL = "INFO"


@dataclass(frozen=True)
class WorkerEnvironment:
    """What the worker runs with: ``log_level`` (a ``logging`` level number), ``threads``, and ``problem``, the
    settings that could not be used, as one error (None when all could)."""

    log_level: int
    threads: ThreadChoice
    problem: BackendError | None = None


def parse_log_level(text: str | None) -> int:
    """The ``logging`` level named by ``text`` (any case; None or empty: ``DEFAULT_LOG_LEVEL``).

    Raises:
        BackendError: ``environment`` naming ``RSREFSEG2_LOG_LEVEL`` and the allowed names.
    """
    name = (text or "").strip().upper() or DEFAULT_LOG_LEVEL
    if name not in LOG_LEVELS:
        shown = text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"
        raise BackendError("environment", f"{LOG_LEVEL_ENV} is {shown!r}, not a log level",
                           f"set {LOG_LEVEL_ENV} to one of {', '.join(LOG_LEVELS)}, or unset it "
                           f"({DEFAULT_LOG_LEVEL})")
    return logging.getLevelName(name)


def read_worker_environment(requested_threads: int | None = None) -> WorkerEnvironment:
    """The worker's log level and thread count from ``--threads`` and the environment.

    Args:
        requested_threads: the worker's ``--threads`` (0 or None: ``RSREFSEG2_THREADS``, else automatic).

    Returns:
        The settings; an unusable one is replaced by its default and reported as ``problem``.
    """
    problems: list[BackendError] = []
    try:
        level = parse_log_level(os.environ.get(LOG_LEVEL_ENV))
    except BackendError as exc:
        level = logging.getLevelName(DEFAULT_LOG_LEVEL)
        problems.append(exc)
    try:
        threads = choose_threads(requested_threads)
    except BackendError as exc:
        threads = automatic_threads()
        problems.append(exc)
    problem = None
    if problems:  # every unusable setting at once, so one fix is enough
        problem = BackendError(problems[0].code, "; ".join(p.message for p in problems),
                               "; ".join(p.hint for p in problems))
    return WorkerEnvironment(log_level=level, threads=threads, problem=problem)
