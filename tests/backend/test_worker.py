"""The worker: a real ``python -m backend.worker`` subprocess driven over its stdin/stdout, as the plugin does.

The model is the tiny config with random weights on CPU, so masks are arbitrary; the tests check the protocol
behaviour: replies, progress, result files, errors, cancel, shutdown, a killed worker, and a clean stdout.
"""

from __future__ import annotations

import io
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from backend.errors import BackendError
from backend.protocol import (
    Error,
    Ping,
    ProtocolError,
    Segment,
    Shutdown,
    decode,
    encode,
)
from backend.worker import Worker, error_reply, output_name

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


class WorkerProcess:
    """A worker subprocess with a stdout reader thread, like the plugin's client (stderr goes to a file)."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        env = {**os.environ, "RSREFSEG2_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen([sys.executable, *(args or ("-m", "backend.worker"))], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, encoding="utf-8", bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.raw: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.put(line)
        self.lines.put(None)  # EOF: the worker closed stdout (exited or died)

    def send(self, message) -> None:
        self.send_line(encode(message))

    def send_line(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = TIMEOUT):
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise EOFError(f"worker died (exit {self.proc.wait(10)}); stderr:\n{self.stderr()}")
        return decode(line)

    def until(self, req_id: str, final: tuple[str, ...]) -> tuple[list, object]:
        """Collect replies for ``req_id`` until one whose type is in ``final``; returns (others, final)."""
        seen = []
        while True:
            message = self.recv()
            if message.id == req_id and message.TYPE in final:
                return seen, message
            seen.append(message)

    def stderr(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path):
    started: list[WorkerProcess] = []

    def start(*args: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path / f"worker{len(started)}.log", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


def test_library_output_never_reaches_the_protocol_stream(spawn) -> None:
    # Whatever runs inside the worker and writes to stdout (print or a C library on fd 1) lands on stderr.
    code = ("import os, sys; from backend.worker import main; rc = main(); print('python print'); "
            "sys.stdout.flush(); os.write(1, b'fd1 write\\n'); sys.exit(rc)")
    worker = spawn("-c", code)
    worker.send(Ping(id="a"))
    worker.send(Shutdown(id="b"))
    assert worker.proc.wait(TIMEOUT) == 0
    worker.lines.get(timeout=TIMEOUT)
    assert [decode(line).TYPE for line in worker.raw] == ["pong", "bye"]
    assert "python print" in worker.stderr() and "fd1 write" in worker.stderr()


def test_serve_in_process_answers_in_order() -> None:
    out = io.StringIO()
    lines = [encode(Ping(id="1")), "{broken", encode(Segment(id="2", raster="r.tif", phrases=("x",),
                                                               output_dir="o")),
             '{"type": "pong", "id": "3", "v": 1, "protocol": 1, "backend_version": "x"}',
             encode(Shutdown(id="4")), encode(Ping(id="never"))]
    assert Worker(out).serve(lines) == 0
    replies = [decode(line) for line in out.getvalue().splitlines()]
    assert [(r.TYPE, r.id) for r in replies][:1] == [("pong", "1")]
    errors = {r.id: r for r in replies if r.TYPE == "error"}
    assert errors[""].code == "bad_request" and "JSON" in errors[""].message
    assert errors["2"].code == "bad_request" and "no model is loaded" in errors["2"].message
    assert errors["3"].code == "bad_request" and "reply" in errors["3"].message
    assert ("bye", "4") in [(r.TYPE, r.id) for r in replies]


def test_error_mapping(caplog) -> None:
    assert error_reply("a", BackendError("no_crs", "no CRS", "assign one")) == Error(
        id="a", code="no_crs", message="no CRS", hint="assign one")
    assert error_reply("b", ProtocolError("missing field 'x'")).code == "bad_request"
    oom = error_reply("c", torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert oom.code == "out_of_memory" and "tile size" in oom.hint and "cpu" in oom.hint
    assert error_reply("d", MemoryError()).code == "out_of_memory"
    internal = error_reply("e", ZeroDivisionError("division by zero"))
    assert internal.code == "internal" and internal.message == "ZeroDivisionError: division by zero"
    assert "Traceback" in caplog.text or "ZeroDivisionError" in caplog.text


def test_output_names_are_safe() -> None:
    assert output_name("req-12") == "rsrefseg_req-12"
    assert output_name("../../etc/passwd") == "rsrefseg_etc_passwd"
    assert output_name("") == "rsrefseg_request"
