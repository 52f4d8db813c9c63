"""The plugin's side of the worker protocol: one long-lived ``python -m backend.worker`` subprocess.

``BackendClient`` starts the worker lazily with the configured interpreter, sends one request at a time (a lock
queues concurrent callers in arrival order) and waits for the reply with the same id, forwarding ``progress``
messages to a callback and turning an ``error`` reply into a ``WorkerError``. Two reader threads drain stdout
(JSON lines) and stderr (logs; the last lines are kept to explain a crash), so the worker never stalls on a
full pipe. Calls block the *calling* thread; they are made from QgsTask/Processing worker threads, never from
the GUI thread (only ``shutdown``, which is bounded by a timeout, runs there).

No torch and no qgis.core: only QtCore for translated messages, so it also serves tests and scripts.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import paths
from .i18n import tr

POLL_SECONDS = 0.1
THREADS_ENV = "RSREFSEG2_THREADS"
STDERR_LINES = 25
_EOF = object()


class WorkerError(Exception):
    """A failed request, as the worker reported it or as the client observed it (crash, missing Python).

    Attributes:
        code: the ``backend.errors`` code, or "worker_crashed" / "worker_start" for client-side failures
            ("environment" too when the worker exits before answering anything: it cannot run there).
        message: what went wrong.
        hint: what to do about it.
    """

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        """Message and hint as separate sentences ("No model is loaded. Send a 'load' request first.")."""
        return " ".join(sentence(part) for part in (self.message, self.hint) if part.strip())


def sentence(text: str) -> str:
    """``text`` as a sentence: first letter upper case, ending in a full stop unless it ends in punctuation
    already, so that texts joined by a space never run together ("…is loaded send a…")."""
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…:" else text + "."


class BackendClient:
    """A client for one worker process, restarted on demand after it dies.

    Args:
        python: the interpreter that has torch and the backend's dependencies.
        backend_root: the folder that contains ``backend/`` (working directory and ``PYTHONPATH``).
        log: called with each stderr line of the worker (from a reader thread); None drops them.
        cancel_grace: seconds a cancelled request may take to end before the worker is killed.
        threads: torch threads for the worker (``RSREFSEG2_THREADS``); 0 = the worker chooses.
    """

    def __init__(self, *, python: Path, backend_root: Path, log: Callable[[str], None] | None = None,
                 cancel_grace: float = 15.0, threads: int = 0) -> None:
        self.python = Path(python)
        self.threads = threads
        self.backend_root = Path(backend_root)
        self.protocol = paths.load_protocol()
        self._log = log
        self._cancel_grace = cancel_grace
        self._call_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._replies: queue.Queue = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._loaded: tuple[Any, Any] | None = None  # (load request without id, Loaded reply)
        self._closing = False
        self._answered = False  # whether the running worker has answered anything (else it never started)
        self._stderr_thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """True while a worker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The worker's process id, or None when none is running."""
        return self._process.pid if self.running else None

    def _start(self) -> None:
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONHOME", "PYTHONPATH")}
        env.update(PYTHONPATH=str(self.backend_root), PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        if self.threads > 0:
            env[THREADS_ENV] = str(self.threads)
        flags = subprocess.CREATE_NO_WINDOW if os.name == "nt" else 0
        try:
            process = subprocess.Popen(
                [str(self.python), "-m", "backend.worker"], cwd=self.backend_root, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                encoding="utf-8", errors="replace", bufsize=1, creationflags=flags)
        except OSError as exc:
            raise WorkerError(
                "worker_start", tr("Cannot start the backend with {python}: {error}.").format(
                    python=self.python, error=exc.strerror or exc),
                no_python_hint()) from exc
        self._replies = queue.Queue()
        self._stderr.clear()
        self._loaded = None
        self._closing = False
        self._answered = False
        self._process = process
        threading.Thread(target=self._read_stdout, args=(process, self._replies), daemon=True,
                         name="rsrefseg2-stdout").start()
        self._stderr_thread = threading.Thread(target=self._read_stderr, args=(process,), daemon=True,
                                               name="rsrefseg2-stderr")
        self._stderr_thread.start()

    def _read_stdout(self, process: subprocess.Popen, replies: queue.Queue) -> None:
        for line in process.stdout:
            if not line.strip():
                continue
            try:
                replies.put(self.protocol.decode(line))
            except self.protocol.ProtocolError as exc:
                self._remember(f"[client] unreadable worker output ({exc}): {line.strip()[:200]}")
        replies.put(_EOF)

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self._remember(line.rstrip())

    def _remember(self, line: str) -> None:
        self._stderr.append(line)
        if self._log is not None:
            self._log(line)

    def stderr_tail(self) -> str:
        """The worker's last stderr lines (what explains a crash)."""
        return "\n".join(self._stderr)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit, wait up to ``timeout`` seconds, then kill it. Safe to call at any time."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        self._closing = True
        try:
            self._write(self.protocol.Shutdown(id=_new_id()))
            process.stdin.close()  # EOF as well: the worker's stdin reader ends instead of blocking its exit
            process.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired, WorkerError):
            process.kill()
            process.wait(timeout=timeout)
        finally:
            for stream in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    stream.close()

    def kill(self) -> None:
        """Kill the worker at once (it is restarted by the next request)."""
        if self.running:
            self._process.kill()
            self._process.wait()

    # ------------------------------------------------------------------------------------------- requests
    def ping(self) -> Any:
        """Start the worker if needed and check it answers. Returns the ``Pong`` reply."""
        return self.call(self.protocol.Ping(id=_new_id()))

    def holds(self, *, checkpoint: str | None, config: str | None, device: str = "auto", mode: str = "trained",
              clip_weights: str | None = None, sam_weights: str | None = None, precision: str = "auto") -> bool:
        """True when the running worker has this model loaded already (``load`` with it returns at once)."""
        request = self.protocol.Load(id="", checkpoint=checkpoint, config=config, device=device, mode=mode,
                                     clip_weights=clip_weights, sam_weights=sam_weights, precision=precision)
        loaded = self._loaded
        return loaded is not None and loaded[0] == request and self.running

    def load(self, *, checkpoint: str | None, config: str | None, device: str = "auto",
             mode: str = "trained", clip_weights: str | None = None, sam_weights: str | None = None,
             precision: str = "auto", is_cancelled: Callable[[], bool] | None = None) -> Any:
        """Load a model unless the running worker already holds the same one (same device and precision too).
        Returns the ``Loaded`` reply (its ``precision`` and ``precision_reason`` say what the worker chose)."""
        request = self.protocol.Load(id="", checkpoint=checkpoint, config=config, device=device, mode=mode,
                                     clip_weights=clip_weights, sam_weights=sam_weights, precision=precision)
        with self._call_lock:
            if self._loaded is not None and self._loaded[0] == request and self.running:
                return self._loaded[1]
            # Forgotten first: after a failed load the worker may hold the old model or none (it frees the old
            # one when the new one does not fit beside it), so the next query loads again rather than trust it.
            self._loaded = None
            reply = self._call_locked(dataclasses.replace(request, id=_new_id()), None, is_cancelled)
            self._loaded = (request, reply)
            return reply

    def segment(self, *, on_progress: Callable[[float, str, str], None] | None = None,
                is_cancelled: Callable[[], bool] | None = None, **fields: Any) -> Any:
        """Run one ``segment`` request (fields as in ``protocol.Segment`` without ``id``).

        Args:
            on_progress: called as ``(fraction, stage, message)`` for each progress message.
            is_cancelled: polled every 0.1 s; once True the request is cancelled in the worker.

        Returns:
            The ``Result`` reply.

        Raises:
            WorkerError: the worker's error (code "cancelled" after a cancel), a crash or a start failure.
        """
        return self.call(self.protocol.Segment(id=_new_id(), **fields), on_progress, is_cancelled)

    def refine(self, *, is_cancelled: Callable[[], bool] | None = None, **fields: Any) -> Any:
        """Run one ``refine`` request (fields as in ``protocol.Refine`` without ``id``): the user's clicks on a view
        the worker segmented, decoded on its cached features. Returns the ``Result`` reply.

        Raises:
            WorkerError: code "not_cached" when the worker no longer holds the view (segment it again), or as
                ``segment``.
        """
        return self.call(self.protocol.Refine(id=_new_id(), **fields), None, is_cancelled)

    def call(self, request: Any, on_progress: Callable[[float, str, str], None] | None = None,
             is_cancelled: Callable[[], bool] | None = None) -> Any:
        """Send ``request`` and wait for its reply (see ``segment`` for the arguments)."""
        with self._call_lock:
            return self._call_locked(request, on_progress, is_cancelled)

    def _call_locked(self, request: Any, on_progress: Callable[[float, str, str], None] | None,
                     is_cancelled: Callable[[], bool] | None) -> Any:
        if not self.running:
            self._start()
            if request.TYPE != "ping":  # a worker that cannot run fails on this, not on a first load that crashes
                self._call_locked(self.protocol.Ping(id=_new_id()), None, is_cancelled)
        replies = self._replies
        self._write(request)
        cancel_deadline: float | None = None
        while True:
            # Checked on every message, not only when the worker is quiet: a fast run streams progress
            # replies more often than the poll interval and would otherwise never see the cancel.
            if cancel_deadline is None and is_cancelled is not None and is_cancelled():
                self._write(self.protocol.Cancel(id=_new_id(), target=request.id))
                cancel_deadline = time.monotonic() + self._cancel_grace
            elif cancel_deadline is not None and time.monotonic() > cancel_deadline:
                self.kill()
                raise WorkerError("cancelled", tr("Cancelled (the backend did not stop in time and was "
                                                  "restarted).")) from None
            try:
                reply = replies.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if reply is _EOF:
                raise self._crash_error()
            self._answered = True
            if reply.id != request.id:
                continue  # a late reply to an earlier, abandoned request
            if reply.TYPE == "progress":
                if on_progress is not None:
                    on_progress(reply.fraction, reply.stage, reply.message)
                continue
            if reply.TYPE == "error":
                raise WorkerError(reply.code, reply.message, reply.hint)
            return reply

    def _write(self, message: Any) -> None:
        process = self._process
        try:
            with self._write_lock:
                process.stdin.write(self.protocol.encode(message) + "\n")
                process.stdin.flush()
        except (OSError, ValueError) as exc:  # ValueError: the pipe was closed
            raise self._crash_error() from exc

    def _crash_error(self) -> WorkerError:
        process = self._process
        status = process.wait() if process is not None else None
        if self._stderr_thread is not None:
            self._stderr_thread.join(timeout=2.0)  # the last lines explain the crash
        self._loaded = None
        if self._closing:
            return WorkerError("cancelled", tr("The backend was shut down."))
        tail = self.stderr_tail() or tr("(the worker printed nothing)")
        if not self._answered:  # it never ran: a Python without our packages, or not a Python at all
            return WorkerError(
                "environment", tr("The backend cannot run with {python} (it exited with status {status} before "
                                  "answering). Its last messages:\n{tail}").format(
                                      python=self.python, status=status, tail=tail), no_python_hint())
        if "No module named" in tail:  # a Python without the backend's packages: not a crash to retry
            hint = no_python_hint()
        else:
            hint = tr("The next query restarts it. If it keeps failing, check the device (try 'cpu') and the "
                      "Diagnostics.")
        return WorkerError(
            "worker_crashed",
            tr("The backend worker stopped unexpectedly (exit status {status}). Its last messages:\n{tail}").format(
                status=status, tail=tail), hint)


def no_python_hint() -> str:
    """What to do when the worker's Python is missing or lacks PyTorch (also offline)."""
    return tr("Point the plugin at an existing Python that has PyTorch: Plugins → RSRefSeg 2 → Settings… → "
              "Worker Python (works offline; for headless runs set RSREFSEG2_PYTHON). With network access, "
              "Plugins → RSRefSeg 2 → Set up backend… installs one.")


def _new_id() -> str:
    return uuid.uuid4().hex[:12]
