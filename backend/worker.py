"""``python -m backend.worker``: the long-lived process the QGIS plugin talks to (see ``backend.protocol``).

Requests arrive as JSON lines on stdin, replies leave as JSON lines on stdout, logs go to stderr. A reader
thread decodes stdin so that ``cancel`` (and ``ping``) are seen while a ``segment`` runs on the main thread;
every other request is queued and handled in order. The loaded predictor, and with it the embedding cache,
stays in memory between requests. The real stdout is kept for the protocol only: file descriptor 1 and
``sys.stdout`` are pointed at stderr, so no library print (Python or C) can corrupt the stream.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

from backend.errors import BackendError
from backend.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Cancel,
    Error,
    Load,
    Loaded,
    Outputs,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Reply,
    Request,
    Result,
    Segment,
    Shutdown,
    decode,
    encode,
    request_id,
)

log = logging.getLogger("backend.worker")

OOM_HINT = ("lower the tile size or the resolution (more map units per pixel), close other GPU programs, "
            "or load the model with device 'cpu'")


@functools.cache
def backend_version() -> str:
    """The installed package version ("unknown" when running from a bare source tree)."""
    try:
        return version("rsrefseg2-qgis")
    except PackageNotFoundError:
        return "unknown"


def error_reply(req_id: str, exc: BaseException) -> Error:
    """Map an exception to an ``error`` reply; unforeseen ones are logged with their traceback.

    Args:
        req_id: the id of the request that failed.
        exc: what was raised.

    Returns:
        ``BackendError`` → its own code; ``ProtocolError`` → "bad_request"; an out-of-memory error (CUDA or
        host) → "out_of_memory" with advice; anything else → "internal" with the exception text.
    """
    if isinstance(exc, BackendError):
        return Error(id=req_id, code=exc.code, message=exc.message, hint=exc.hint)
    if isinstance(exc, ProtocolError):
        return Error(id=req_id, code="bad_request", message=str(exc),
                     hint="this is a bug in the client: its request does not follow the protocol")
    torch = sys.modules.get("torch")
    if isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)):
        return Error(id=req_id, code="out_of_memory", message=f"out of memory: {exc}".strip(": "), hint=OOM_HINT)
    log.error("request %s failed unexpectedly", req_id, exc_info=exc)
    return Error(id=req_id, code="internal", message=f"{type(exc).__name__}: {exc}",
                 hint="this is a bug; please report it with the worker log and `python -m backend info`")


@dataclass
class _Invalid:
    """A line that did not decode; answered with a "bad_request" error in its turn."""

    line: str
    problem: ProtocolError


@dataclass
class Worker:
    """Serves protocol requests; holds the loaded predictor and engine between requests.

    Attributes:
        out: the protocol stream (the process's real stdout).
    """

    out: TextIO
    _write_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _cancel_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _cancelled: set[str] = field(default_factory=set, init=False)
    _engine: Any = field(default=None, init=False)
    _model_name: str = field(default="", init=False)
    _checkpoint_name: str = field(default="", init=False)

    def send(self, message: Reply) -> None:
        """Write one reply line and flush it (thread-safe)."""
        line = encode(message)
        with self._write_lock:
            self.out.write(line + "\n")
            self.out.flush()

    def is_cancelled(self, req_id: str) -> bool:
        with self._cancel_lock:
            return req_id in self._cancelled

    def _read(self, lines: Iterable[str], inbox: queue.Queue[Request | _Invalid | None]) -> None:
        """Reader thread: answer ``ping``, record ``cancel``, queue the rest; ``None`` marks end of input."""
        for line in lines:
            if not line.strip():
                continue
            try:
                message = decode(line)
            except ProtocolError as exc:
                inbox.put(_Invalid(line, exc))
                continue
            if isinstance(message, Ping):
                self.send(Pong(id=message.id, protocol=PROTOCOL_VERSION, backend_version=backend_version()))
            elif isinstance(message, Cancel):
                log.info("cancel requested for %s", message.target)
                with self._cancel_lock:
                    self._cancelled.add(message.target)
            elif isinstance(message, (Load, Segment, Shutdown)):
                inbox.put(message)
            else:
                inbox.put(_Invalid(line, ProtocolError(f"{message.TYPE!r} is a reply, not a request")))
        inbox.put(None)

    def serve(self, lines: Iterable[str]) -> int:
        """Handle requests from ``lines`` until ``shutdown`` or end of input; returns the exit status (0)."""
        inbox: queue.Queue[Request | _Invalid | None] = queue.Queue()
        threading.Thread(target=self._read, args=(lines, inbox), name="stdin-reader", daemon=True).start()
        while True:
            item = inbox.get()
            if item is None:
                log.info("stdin closed; exiting")
                return 0
            if isinstance(item, _Invalid):
                self.send(error_reply(request_id(item.line), item.problem))
                continue
            if isinstance(item, Shutdown):
                self.send(Bye(id=item.id))
                log.info("shutdown requested; exiting")
                return 0
            try:
                if isinstance(item, Load):
                    self.send(self._load(item))
                else:
                    self._segment(item)
            except Exception as exc:  # noqa: BLE001 (every failure becomes an error reply)
                reply = error_reply(item.id, exc)
                if reply.code == "out_of_memory":
                    _release_accelerator_memory()
                self.send(reply)

    def _load(self, req: Load) -> Loaded:
        from backend.engine import Engine
        from backend.loading import describe, load_predictor

        log.info("loading checkpoint=%s config=%s device=%s mode=%s", req.checkpoint, req.config, req.device,
                 req.mode)
        self._engine = None  # free the previous model before building the next one
        predictor = load_predictor(checkpoint=req.checkpoint, config=req.config, clip_weights=req.clip_weights,
                                   sam_weights=req.sam_weights, device=req.device, mode=req.mode)
        self._engine = Engine(predictor)
        self._model_name = describe(predictor)
        self._checkpoint_name = Path(req.checkpoint).name if req.checkpoint else f"none (config {req.config})"
        log.info("loaded %s on %s", self._model_name, predictor.device)
        return Loaded(id=req.id, model=self._model_name, device=str(predictor.device))

    def _segment(self, req: Segment) -> None:
        from backend.engine import SegmentJob

        if self._engine is None:
            raise BackendError("bad_request", "no model is loaded", "send a 'load' request before 'segment'")
        # Every field of the request but its id is a field of the engine's job (tests/backend/test_worker.py).
        request_fields = {f.name: getattr(req, f.name) for f in fields(req) if f.name != "id"}
        job = SegmentJob(**request_fields, output_name=output_name(req.id), model_name=self._model_name,
                         checkpoint_name=self._checkpoint_name)

        def progress(fraction: float, stage: str, message: str = "") -> None:
            self.send(Progress(id=req.id, fraction=min(max(float(fraction), 0.0), 1.0), stage=stage,
                               message=message))

        output_dir = Path(req.output_dir)
        before = set(output_dir.iterdir()) if output_dir.is_dir() else set()
        try:
            if self.is_cancelled(req.id):
                raise BackendError("cancelled", "cancelled before it started")
            result = self._engine.run(job, progress=progress, should_cancel=lambda: self.is_cancelled(req.id))
        except BaseException:
            _remove_new_files(output_dir, before)
            raise
        finally:
            with self._cancel_lock:
                self._cancelled.discard(req.id)
        self.send(Result(id=req.id, outputs=Outputs(geojson=result.outputs["geojson"],
                                                    gpkg=result.outputs.get("gpkg")),
                         phrases=tuple(result.phrases), crs=result.crs, timings=dict(result.timings)))


def output_name(req_id: str) -> str:
    """The file stem of a request's outputs: ``rsrefseg_<id>`` with only safe characters kept."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", req_id).strip("._") or "request"
    return f"rsrefseg_{safe}"


def _release_accelerator_memory() -> None:
    """Return cached CUDA blocks after an out-of-memory error, so the next (smaller) request can run."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _remove_new_files(folder: Path, before: set[Path]) -> None:
    """Delete files that appeared in ``folder`` during a failed or cancelled run (no partial outputs)."""
    if not folder.is_dir():
        return
    for path in set(folder.iterdir()) - before:
        if path.is_file():
            log.info("removing partial output %s", path)
            path.unlink()


def read_lines(fd: int) -> Iterator[str]:
    """UTF-8 lines from a file descriptor, read with ``os.read``.

    Unbuffered on purpose: the reader thread then blocks in a system call holding no Python I/O lock, so the
    interpreter can shut down while it waits (a daemon thread inside ``sys.stdin``'s buffer aborts the exit).
    """
    pending = b""
    while chunk := os.read(fd, 1 << 16):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def main() -> int:
    """Entry point: keep the real stdout for the protocol, send everything else to stderr, serve stdin."""
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", newline="\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # C-level writes to fd 1 now land on stderr
    sys.stdout = sys.stderr
    logging.basicConfig(level=os.environ.get("RSREFSEG2_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("worker ready (protocol %d, backend %s, pid %d)", PROTOCOL_VERSION, backend_version(), os.getpid())
    return Worker(protocol_out).serve(read_lines(sys.stdin.fileno()))


if __name__ == "__main__":
    raise SystemExit(main())
