"""``python -m backend.worker``: the long-lived process the QGIS plugin talks to (see ``backend.protocol``).

Requests arrive as JSON lines on stdin, replies leave as JSON lines on stdout, logs go to stderr. A reader
thread decodes stdin so that ``cancel`` (and ``ping``) are seen while a ``segment`` runs on the main thread;
every other request is queued and handled in order. The loaded predictor, and with it the embedding cache,
stays in memory between requests. Input lines are bounded (``MAX_LINE_BYTES``) and read in linear time, so a
huge or malformed line is answered with an error at once and later pings and cancels are not held up. The real
stdout is kept for the protocol only: file descriptor 1 and ``sys.stdout`` are pointed at stderr, so no library
print (Python or C) can corrupt the stream.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
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

from backend.environment.packages import import_failure, lacking_packages, missing_modules, require_packages
from backend.environment.variables import ThreadChoice, automatic_threads, read_worker_environment
from backend.errors import BackendError, safe_text
from backend.protocol import (
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    WARNING_STAGE,
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
    Refine,
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

# Longest request line accepted. A request carries paths and phrases, never pixels: a few KiB is typical, and a
# phrases file of thousands of lines stays far below this.
MAX_LINE_BYTES = 8 << 20
READ_CHUNK_BYTES = 1 << 16

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
        ``BackendError`` → its own code; ``ProtocolError`` → "bad_request"; a third-party package that does
        not import (a Python without our packages) → "environment"; an out-of-memory error (CUDA or host) →
        "out_of_memory" with advice; anything else → "internal" with the exception text (through
        ``safe_text``, like every ``BackendError``).
    """
    if isinstance(exc, BackendError):
        return Error(id=req_id, code=exc.code, message=exc.message, hint=exc.hint)
    if isinstance(exc, ProtocolError):
        return Error(id=req_id, code="bad_request", message=str(exc),
                     hint="this is a bug in the client: its request does not follow the protocol")
    if isinstance(exc, ImportError) and (lacking := import_failure(exc)) is not None:
        return Error(id=req_id, code=lacking.code, message=lacking.message, hint=lacking.hint)
    if is_out_of_memory(exc):
        return Error(id=req_id, code="out_of_memory", message=safe_text(f"out of memory: {exc}".strip(": ")),
                     hint=OOM_HINT)
    log.error("request %s failed unexpectedly", req_id, exc_info=exc)
    return Error(id=req_id, code="internal", message=safe_text(f"{type(exc).__name__}: {exc}"),
                 hint="this is a bug; please report it with the worker log and `python -m backend info`")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is the host or CUDA running out of memory."""
    torch = sys.modules.get("torch")
    return isinstance(exc, MemoryError) or (torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError))


@dataclass
class _Invalid:
    """A line that did not decode; answered at once with a "bad_request" error for request ``req_id``."""

    req_id: str
    problem: ProtocolError


@dataclass
class Worker:
    """Serves protocol requests; holds the loaded predictor and engine between requests.

    Attributes:
        out: the protocol stream (the process's real stdout).
        threads: torch's thread count (None: automatic).
        environment_problem: a setting the worker could not use (``backend.environment.variables``); every ``load`` is
            answered with it.
    """

    out: TextIO
    threads: ThreadChoice | None = None
    environment_problem: BackendError | None = None
    _write_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _cancel_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _cancelled: set[str] = field(default_factory=set, init=False)
    _active: set[str] = field(default_factory=set, init=False)  # segment ids queued or running
    _threads_set: bool = field(default=False, init=False)
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

    @property
    def pending_cancels(self) -> frozenset[str]:
        """Ids of queued or running segment requests that were asked to cancel."""
        with self._cancel_lock:
            return frozenset(self._cancelled)

    def _cancel(self, target: str) -> None:
        """Record a cancel for a queued or running segment; one for any other id is dropped, not kept forever."""
        with self._cancel_lock:
            known = target in self._active
            if known:
                self._cancelled.add(target)
        log.info("cancel requested for %s%s", target, "" if known else ": no such request is queued or running")

    def _finished(self, req_id: str) -> None:
        with self._cancel_lock:
            self._active.discard(req_id)
            self._cancelled.discard(req_id)

    def _read(self, lines: Iterable[str | _Invalid], inbox: queue.Queue[Request | None]) -> None:
        """Reader thread: answer ``ping`` and invalid lines, record ``cancel``, queue the rest; ``None`` marks
        end of input. Nothing here waits for a running request, so these answers come at once.

        No line can end the thread: an unforeseen failure on one line is answered as an error for it, and when
        the thread does end (end of input, or the client stopped reading our replies) the main loop is told.
        """
        try:
            for line in lines:
                try:
                    self._take(line, inbox)
                except Exception as exc:  # noqa: BLE001 (the reader must outlive any one line)
                    self.send(error_reply(line.req_id if isinstance(line, _Invalid) else _id_of(line), exc))
        finally:
            inbox.put(None)

    def _take(self, line: str | _Invalid, inbox: queue.Queue[Request | None]) -> None:
        """Handle one input line on the reader thread."""
        if isinstance(line, _Invalid):
            self.send(error_reply(line.req_id, line.problem))
            return
        if not line.strip():
            return
        try:
            message = decode(line)
            if type(message) not in REQUEST_TYPES.values():
                raise ProtocolError(f"{message.TYPE!r} is a reply, not a request")
        except ProtocolError as exc:
            self.send(error_reply(_id_of(line), exc))
            return
        if isinstance(message, Ping):
            self.send(Pong(id=message.id, protocol=PROTOCOL_VERSION, backend_version=backend_version()))
        elif isinstance(message, Cancel):
            self._cancel(message.target)
        else:
            if isinstance(message, Segment):
                with self._cancel_lock:
                    self._active.add(message.id)
            inbox.put(message)

    def serve(self, lines: Iterable[str | _Invalid]) -> int:
        """Handle requests from ``lines`` until ``shutdown`` or end of input; returns the exit status (0)."""
        inbox: queue.Queue[Request | None] = queue.Queue()
        threading.Thread(target=self._read, args=(lines, inbox), name="stdin-reader", daemon=True).start()
        while True:
            item = inbox.get()
            if item is None:
                log.info("stdin closed; exiting")
                return 0
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
            finally:
                if isinstance(item, Segment):
                    self._finished(item.id)

    def _load(self, req: Load) -> Loaded:
        if self.environment_problem is not None:
            raise self.environment_problem
        log.info("loading checkpoint=%s config=%s device=%s mode=%s", req.checkpoint, req.config, req.device,
                 req.mode)
        require_packages()  # every missing package named at once, before the engine imports any of them
        from backend.engine import Engine
        from backend.loading import describe

        self._set_threads()
        # The working model stays loaded until the next one has been built: a load that fails (missing base
        # weights, a bad file, no CUDA) leaves the previous model answering, never no model at all. Only running
        # out of memory beside it frees the previous model, for one more try with the room that leaves.
        try:
            predictor = self._build(req)
        except Exception as exc:
            if self._engine is None or not is_out_of_memory(exc):
                raise
            log.warning("out of memory while loading beside the current model; freeing it and trying again")
            self._engine = None
            self._model_name = self._checkpoint_name = ""
            _release_accelerator_memory()
            predictor = self._build(req)
        self._engine = Engine(predictor)
        self._model_name = describe(predictor)
        self._checkpoint_name = Path(req.checkpoint).name if req.checkpoint else f"none (config {req.config})"
        log.info("loaded %s on %s (%s: %s)", self._model_name, predictor.device, predictor.precision,
                 predictor.precision_reason)
        meta = predictor.meta
        return Loaded(id=req.id, model=self._model_name, device=str(predictor.device), title=meta.title or "",
                      description=meta.description or "", gsd_range_m=meta.gsd_range_m,
                      input_size=int(predictor.input_size), precision=predictor.precision,
                      precision_reason=predictor.precision_reason)

    @staticmethod
    def _build(req: Load) -> Any:
        """The predictor ``req`` asks for (imported here: the worker imports torch only once a model loads)."""
        from backend.loading import load_predictor

        return load_predictor(checkpoint=req.checkpoint, config=req.config, clip_weights=req.clip_weights,
                              sam_weights=req.sam_weights, device=req.device, mode=req.mode,
                              precision=req.precision)

    def _set_threads(self) -> None:
        """Give torch the chosen thread count, once, before the first model is built."""
        if self._threads_set:
            return
        import torch

        choice = self.threads or automatic_threads()
        torch.set_num_threads(choice.count)
        self._threads_set = True
        log.info("torch threads: %s", choice)

    def _segment(self, req: Segment) -> None:
        from backend.engine import SegmentJob

        if self._engine is None:
            raise BackendError("bad_request", "no model is loaded", "send a 'load' request before 'segment'")
        # Every field of the request but its id is a field of the engine's job (tests/backend/test_worker.py).
        request_fields = {f.name: getattr(req, f.name) for f in fields(req) if f.name != "id"}
        # A refinement decodes the view's cached features and never encodes the image again.
        job = SegmentJob(**request_fields, output_name=output_name(req.id), model_name=self._model_name,
                         checkpoint_name=self._checkpoint_name, cached_only=isinstance(req, Refine))

        def progress(fraction: float, stage: str, message: str = "") -> None:
            if stage == WARNING_STAGE:
                log.warning("request %s: %s", req.id, message)
            self.send(Progress(id=req.id, fraction=min(max(float(fraction), 0.0), 1.0), stage=stage,
                               message=message))

        # A failed or cancelled run leaves nothing of its own in the output folder: writing is the engine's last
        # step and places its files all or none (backend.output.writing). So nothing is deleted here: any file
        # that appeared in the folder meanwhile is someone else's (another program, another worker).
        if self.is_cancelled(req.id):
            raise BackendError("cancelled", "cancelled before it started")
        result = self._engine.run(job, progress=progress, should_cancel=lambda: self.is_cancelled(req.id))
        self.send(Result(id=req.id, outputs=Outputs(geojson=result.outputs["geojson"],
                                                    gpkg=result.outputs.get("gpkg"),
                                                    probability=result.outputs.get("probability")),
                         phrases=tuple(result.phrases), crs=result.crs, timings=dict(result.timings),
                         resolution_used=result.resolution_used, resolution_note=result.resolution_note,
                         warnings=tuple(result.warnings)))


# Longest id kept whole in an output file name; file systems allow 255 bytes for a name with its suffix.
MAX_NAME_ID = 64


def output_name(req_id: str) -> str:
    """The file stem of a request's outputs: ``rsrefseg_<id>`` with only safe characters kept.

    An id that had to be changed (characters replaced, or cut to ``MAX_NAME_ID``) also gets a short hash of the
    whole id, so the name fits any file system and two ids never share files ("é" and "ü", or two long ids
    with the same beginning).
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", req_id).strip("._")[:MAX_NAME_ID] or "request"
    if safe != req_id:
        safe = f"{safe}_{hashlib.sha256(req_id.encode('utf-8', 'replace')).hexdigest()[:10]}"
    return f"rsrefseg_{safe}"


def _release_accelerator_memory() -> None:
    """Return cached CUDA blocks after an out-of-memory error, so the next (smaller) request can run."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _leading_id(head: bytes) -> str:
    """The ``id`` of a request from the start of its line (messages put it first), "" when not found there."""
    found = re.search(rb'"id"\s*:\s*"([^"\\]{0,200})"', head)
    return found.group(1).decode("utf-8", "replace") if found else ""


def _id_of(line: str) -> str:
    """The ``id`` of a line that did not decode: from its JSON, else from its start."""
    return request_id(line) or _leading_id(line[:4096].encode("utf-8", "replace"))


def _decode_line(raw: bytes) -> str | _Invalid:
    """One complete line as text; a line that is not UTF-8 becomes an error for its request at once."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Invalid(_leading_id(raw[:4096]), ProtocolError(
            f"the request is not valid UTF-8 (byte {exc.start} is {raw[exc.start:exc.start + 1]!r})"))


def _too_long(head: bytes, limit: int) -> _Invalid:
    return _Invalid(_leading_id(head), ProtocolError(
        f"the request line is longer than {limit:,} bytes; requests carry paths and phrases, never data"))


def read_lines(fd: int, max_bytes: int = MAX_LINE_BYTES) -> Iterator[str | _Invalid]:
    """Lines from a file descriptor, read with ``os.read``: UTF-8 text, or an ``_Invalid`` for a bad line.

    Linear time and bounded memory: each chunk is searched once for line ends, and a line longer than
    ``max_bytes`` is discarded as it arrives (only its first KiB is kept, to name its request in the error).

    Unbuffered on purpose: the reader thread then blocks in a system call holding no Python I/O lock, so the
    interpreter can shut down while it waits (a daemon thread inside ``sys.stdin``'s buffer aborts the exit).
    """
    line = bytearray()
    overlong: bytes | None = None  # the head of a line being discarded, else None
    while chunk := os.read(fd, READ_CHUNK_BYTES):
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if overlong is None:
                line += piece
                if len(line) > max_bytes:
                    overlong = bytes(line[:1024])
                    line.clear()
            if end < 0:
                break
            yield _too_long(overlong, max_bytes) if overlong is not None else _decode_line(bytes(line))
            line.clear()
            overlong = None
            start = end + 1
    if overlong is not None:
        yield _too_long(overlong, max_bytes)
    elif line:
        yield _decode_line(bytes(line))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``--threads N`` (0 = ``RSREFSEG2_THREADS``, else automatic; see ``backend.environment.variables``)."""
    parser = argparse.ArgumentParser(prog="python -m backend.worker",
                                     description="The RSRefSeg 2 worker: JSON lines on stdin/stdout "
                                                 "(see backend/protocol.py).")
    parser.add_argument("--threads", type=int, default=0, metavar="N",
                        help="CPU threads for torch (default 0: $RSREFSEG2_THREADS, else automatic)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: keep the real stdout for the protocol, send everything else to stderr, serve stdin."""
    args = parse_args(argv)
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", newline="\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # C-level writes to fd 1 now land on stderr
    sys.stdout = sys.stderr
    settings = read_worker_environment(args.threads)
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.problem is not None:
        log.error("%s; every load is refused until it is fixed (%s)", settings.problem.message, settings.problem.hint)
    log.info("worker ready (protocol %d, backend %s, pid %d)", PROTOCOL_VERSION, backend_version(), os.getpid())
    if missing := missing_modules():
        log.warning("%s", lacking_packages(missing))  # each load is answered with this error too
    return Worker(protocol_out, threads=settings.threads,
                  environment_problem=settings.problem).serve(read_lines(sys.stdin.fileno()))


if __name__ == "__main__":
    raise SystemExit(main())
