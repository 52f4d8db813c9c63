"""The worker: a real ``python -m backend.worker`` subprocess driven over its stdin/stdout, as the plugin does.

The model is the tiny config with random weights on CPU, so masks are arbitrary; the tests check the protocol
behaviour: replies, progress, result files, errors, cancel, shutdown, a killed worker, and a clean stdout.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from rasters import write_geotiff
from safetensors.torch import save_file

from backend.errors import BackendError
from backend.loading import describe, load_predictor
from backend.model.build import build_model
from backend.model.checkpoint.io import save_checkpoint
from backend.model.clip.encoder import create_open_clip
from backend.model.config import load_config
from backend.model.sam.head import build_sam_parts
from backend.protocol import (
    PROTOCOL_VERSION,
    Cancel,
    Error,
    Load,
    Ping,
    ProtocolError,
    Segment,
    Shutdown,
    decode,
    encode,
)
from backend.weights import manager as weights
from backend.weights.manager import REGISTRY, WeightsEntry
from backend.worker import Worker, error_reply, output_name

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60.0


class WorkerProcess:
    """A worker subprocess with a stdout reader thread, like the plugin's client (stderr goes to a file)."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        env = {**os.environ, "RSREFSEG2_LOG_LEVEL": "INFO", "RSREFSEG2_WEIGHTS_DIR": str(log_path.parent / "w")}
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


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    """A 192×192 RGB GeoTIFF in UTM 33N with a bright rectangle."""
    rng = np.random.default_rng(3)
    data = (rng.random((3, 192, 192)) * 60 + 40).astype(np.uint8)
    data[:, 60:100, 80:130] = 230
    return write_geotiff(tmp_path / "scene.tif", data)


@pytest.fixture
def big_scene(tmp_path: Path) -> Path:
    """A 640×640 GeoTIFF: find-all with 64 px tiles makes a run of ~140 tiles, long enough to cancel."""
    rng = np.random.default_rng(4)
    return write_geotiff(tmp_path / "big.tif", (rng.random((3, 640, 640)) * 200).astype(np.uint8))


def _load(worker: WorkerProcess) -> None:
    worker.send(Load(id="load", config="tiny", device="cpu"))
    _, loaded = worker.until("load", ("loaded", "error"))
    assert loaded.TYPE == "loaded", loaded
    assert loaded.device == "cpu" and "rsrefseg2" in loaded.model


def test_round_trip(spawn, scene: Path, tmp_path: Path) -> None:
    worker = spawn()
    worker.send(Ping(id="p1"))
    pong = worker.recv()
    assert (pong.TYPE, pong.id, pong.protocol) == ("pong", "p1", PROTOCOL_VERSION)

    out = tmp_path / "out"
    out.mkdir()
    worker.send(Segment(id="early", raster=str(scene), phrases=("x",), output_dir=str(out)))
    _, early = worker.until("early", ("error",))
    assert early.code == "bad_request" and "load" in early.hint

    worker.send_line('{"type": "segment", "id": "bad1", "v": 1, "phrases": ["x"], "output_dir": "o"}')
    _, bad = worker.until("bad1", ("error",))
    assert bad.code == "bad_request" and "'raster'" in bad.message

    for req, code in [(Load(id="l1", checkpoint=str(tmp_path / "missing.safetensors")), "checkpoint"),
                      (Load(id="l2", config="no-such-config"), "checkpoint"),
                      (Load(id="l3", mode="zero-shot", config="tiny", device="cpu"), "weights"),
                      (Load(id="l4", config="tiny", clip_weights="sam-vit-h"), "weights")]:
        worker.send(req)
        _, failed = worker.until(req.id, ("error", "loaded"))
        assert failed.TYPE == "error" and failed.code == code, (req, failed)
    if not torch.cuda.is_available():
        worker.send(Load(id="l5", config="tiny", device="cuda:0"))
        _, no_cuda = worker.until("l5", ("error", "loaded"))
        assert no_cuda.code == "device", no_cuda

    checkpoint = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(load_config("tiny")), checkpoint)
    worker.send(Load(id="ckpt", checkpoint=str(checkpoint), device="cpu"))
    _, loaded = worker.until("ckpt", ("loaded", "error"))
    assert loaded.TYPE == "loaded", loaded
    assert loaded.model.startswith("rsrefseg2 · CLIP tiny-clip")
    assert loaded.model.endswith(f"trained · {loaded.precision}")
    worker.send(Segment(id="s1", raster=str(scene), phrases=("the bright roof", "the field"), output_dir=str(out),
                        tile_size=128, overlap=16))
    progress, result = worker.until("s1", ("result", "error"))
    assert result.TYPE == "result", result
    fractions = [p.fraction for p in progress if p.TYPE == "progress" and p.id == "s1"]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    geojson = Path(result.outputs.geojson)
    assert geojson.parent == out and geojson.is_file()
    assert result.outputs.gpkg is None or Path(result.outputs.gpkg).is_file()
    assert json.loads(geojson.read_text())["type"] == "FeatureCollection"
    assert [p.query for p in result.phrases] == ["the bright roof", "the field"]
    assert "UTM zone 33N" in result.crs and "total" in result.timings

    worker.send(Segment(id="s2", raster=str(tmp_path / "worker0.log"), phrases=("x",), output_dir=str(out)))
    _, not_raster = worker.until("s2", ("error",))
    assert not_raster.code == "not_a_raster", not_raster

    worker.send(Shutdown(id="bye"))
    _, bye = worker.until("bye", ("bye",))
    assert worker.proc.wait(TIMEOUT) == 0
    assert all(decode(line) for line in worker.raw)  # stdout held protocol lines only
    assert "worker ready" in worker.stderr()


def test_cancel_mid_run_leaves_no_output_then_a_kill_is_detected(spawn, big_scene: Path, tmp_path: Path) -> None:
    worker = spawn()
    _load(worker)
    out = tmp_path / "cancelled"
    out.mkdir()
    (out / "keep.txt").write_text("not the worker's")
    run = {"raster": str(big_scene), "phrases": ("all tanks",), "output_dir": str(out), "mode": "find-all",
           "tile_size": 64, "overlap": 8}
    worker.send(Segment(id="long", **run))
    while (message := worker.recv()).TYPE != "progress" or not message.message.startswith("tile 2/"):
        assert message.TYPE == "progress", message  # stop once a tile is done and more remain
    worker.send(Ping(id="during"))  # answered by the reader thread while the run goes on
    worker.send(Cancel(id="c1", target="long"))
    replies, final = worker.until("long", ("error", "result"))
    assert final.TYPE == "error" and final.code == "cancelled", final
    assert any(r.TYPE == "pong" and r.id == "during" for r in replies)
    assert not any(r.id == "c1" for r in replies)  # cancel itself gets no reply
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]

    # The worker survives the cancel; a second run is then killed mid-run, as a crash or OOM-kill would.
    worker.send(Segment(id="doomed", **run))
    while (message := worker.recv()).TYPE != "progress" or not message.message.startswith("tile 2/"):
        assert message.TYPE == "progress", message
    worker.proc.kill()  # SIGKILL on POSIX, TerminateProcess on Windows
    with pytest.raises(EOFError, match="worker died") as info:
        while True:
            worker.recv()
    assert worker.proc.returncode == (-signal.SIGKILL if os.name == "posix" else 1)
    assert "worker ready" in str(info.value) and "loading checkpoint=None config=tiny" in str(info.value)


def test_library_output_never_reaches_the_protocol_stream(spawn) -> None:
    # Whatever runs inside the worker and writes to stdout (print or a C library on fd 1) lands on stderr.
    code = ("import os, sys; from backend.worker import main; rc = main(); print('python print'); "
            "sys.stdout.flush(); os.write(1, b'fd1 write\\n'); sys.exit(rc)")
    worker = spawn("-c", code)
    worker.send(Ping(id="a"))
    worker.proc.stdin.close()  # end of input ends the worker cleanly, like shutdown
    assert worker.proc.wait(TIMEOUT) == 0
    worker.lines.get(timeout=TIMEOUT)
    assert [decode(line).TYPE for line in worker.raw] == ["pong"]
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
    assert output_name("../../etc/passwd").startswith("rsrefseg_etc_passwd_")
    assert output_name("").startswith("rsrefseg_request_")
    assert output_name("é") != output_name("ü")  # changed ids keep a hash of the original: no shared files
    long_a, long_b = output_name("x" * 1000 + "a"), output_name("x" * 1000 + "b")
    assert long_a != long_b and len(long_a) < 100  # any id fits a file name, and long ids stay distinct


def test_load_predictor_finds_recorded_base_weights_in_the_weights_folder(tmp_path: Path, monkeypatch,
                                                                         caplog) -> None:
    cfg = load_config("tiny")
    sam_file = tmp_path / "tiny_sam.pth"  # segment_anything's key layout, as the official files have
    parts = build_sam_parts(cfg.sam, cfg.input_size)
    torch.save({f"{p}.{k}": v for p, m in parts.items() for k, v in m.state_dict().items()}, sam_file)
    checkpoint = tmp_path / "ckpt" / "tiny.safetensors"
    checkpoint.parent.mkdir()
    save_checkpoint(build_model(cfg, sam_weights=sam_file), checkpoint)
    folder = tmp_path / "weights"
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(folder))

    with pytest.raises(BackendError, match="needs the sam base weights tiny_sam.pth") as info:
        load_predictor(checkpoint=str(checkpoint), device="cpu")
    assert info.value.code == "weights"
    weights.import_file(sam_file, None, folder)  # unknown to the registry: keeps its own name
    predictor = load_predictor(checkpoint=str(checkpoint), device="cpu")
    assert predictor.model.base_weights["sam"]["file"] == "tiny_sam.pth"
    assert describe(predictor) == ("rsrefseg2 · CLIP tiny-clip 64px · SAM custom-32d · 256px · trained · "
                                   f"{predictor.precision}")

    random_init = load_predictor(config="tiny", device="cpu", sam_weights=str(sam_file))
    assert random_init.mode == "trained" and "untrained prompter" in caplog.text


def test_zero_shot_loads_base_weights_without_a_checkpoint(tmp_path: Path, monkeypatch) -> None:
    cfg = load_config("tiny")
    clip_file, sam_file = tmp_path / "tiny_clip.safetensors", tmp_path / "tiny_sam.pth"
    save_file(create_open_clip(cfg.clip, None).state_dict(), str(clip_file))
    parts = build_sam_parts(cfg.sam, cfg.input_size)
    torch.save({f"{p}.{k}": v for p, m in parts.items() for k, v in m.state_dict().items()}, sam_file)
    with pytest.raises(BackendError, match="needs the base SAM weights") as info:
        load_predictor(config="tiny", mode="zero-shot", clip_weights=str(clip_file), device="cpu")
    assert info.value.code == "weights" and "weights download" in info.value.hint
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path))  # base weights may be given by registry name
    monkeypatch.setitem(REGISTRY, "tiny-sam", WeightsEntry("tiny-sam", "sam", "custom", sam_file.name, "", None, None))
    predictor = load_predictor(config="tiny", mode="zero-shot", clip_weights=str(clip_file),
                               sam_weights="tiny-sam", device="cpu")
    assert predictor.model.base_weights["sam"]["file"] == "tiny_sam.pth"
    assert predictor.mode == "zero-shot" and predictor.device == torch.device("cpu")
    assert predictor.model.base_weights["clip"]["file"] == "tiny_clip.safetensors"


def test_every_segment_request_field_reaches_the_engine_job_with_the_same_default() -> None:
    """The worker hands a request's fields to ``SegmentJob`` by name: the two must not drift apart."""
    import dataclasses

    from backend.engine import SegmentJob

    job_fields = {f.name: f for f in dataclasses.fields(SegmentJob)}
    for request_field in dataclasses.fields(Segment):
        if request_field.name == "id":
            continue
        assert request_field.name in job_fields, f"SegmentJob lacks the request field {request_field.name!r}"
        assert job_fields[request_field.name].default == request_field.default, request_field.name


def test_thread_count_comes_from_the_option_then_the_environment_then_the_machine(monkeypatch) -> None:
    from backend.environment import variables as threads

    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.choose_threads(3) == threads.ThreadChoice(3, "--threads")
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert threads.choose_threads(0) == threads.ThreadChoice(2, threads.ENV_VAR)
    from backend.cli.info import collect

    assert collect()["worker_threads"] == "2 (RSREFSEG2_THREADS)"  # what `backend info` prints
    monkeypatch.setenv(threads.ENV_VAR, "many")
    with pytest.raises(BackendError, match="RSREFSEG2_THREADS is 'many', not a whole number from 0 to 1024"):
        threads.choose_threads()
    monkeypatch.setenv(threads.ENV_VAR, "0")
    # Machines other than this one (CPU count, cores, load) cannot exist here: their probes are replaced.
    for logical, physical, load, expected in [(2, 2, 0.0, 1), (16, 8, 0.0, 8), (16, 8, 15.5, 1), (16, 8, 10.0, 6),
                                              (64, 32, 0.0, 8), (4, None, 0.2, 3)]:
        monkeypatch.setattr(threads, "logical_cpus", lambda n=logical: n)
        monkeypatch.setattr(threads, "physical_cores", lambda n=physical: n)
        monkeypatch.setattr(threads, "_load_average", lambda x=load: x)
        choice = threads.choose_threads()
        assert choice.count == expected and choice.reason.startswith("automatic"), (logical, physical, load, choice)


def test_worker_sets_the_chosen_thread_count_before_loading(spawn, monkeypatch) -> None:
    monkeypatch.setenv("RSREFSEG2_THREADS", "1")
    worker = spawn("-m", "backend.worker", "--threads", "2")
    _load(worker)
    assert "torch threads: 2 (--threads)" in worker.stderr()


def test_load_reply_carries_the_checkpoint_meta_and_the_result_its_resolution(scene: Path, tmp_path: Path) -> None:
    from backend.model.checkpoint.io import CheckpointMeta

    checkpoint = tmp_path / "described.safetensors"
    meta = CheckpointMeta(title="Demo model — synthetic scenes only", description="Roofs, tanks and ponds.",
                          gsd_range_m=(0.25, 2.0))
    save_checkpoint(build_model(load_config("tiny")), checkpoint, meta=meta)
    out = io.StringIO()
    requests = [Load(id="l", checkpoint=str(checkpoint), device="cpu"), Load(id="r", config="tiny", device="cpu"),
                Segment(id="s", raster=str(scene), phrases=("x",), output_dir=str(tmp_path))]
    Worker(out).serve([encode(r) for r in requests])
    replies = {m.id: m for m in map(decode, out.getvalue().splitlines()) if m.TYPE != "progress"}
    assert (replies["l"].title, replies["l"].description) == (meta.title, meta.description)
    assert replies["l"].gsd_range_m == (0.25, 2.0)
    assert replies["l"].input_size == load_config("tiny").input_size  # what an automatic resolution divides by
    assert (replies["r"].title, replies["r"].gsd_range_m) == ("", None)  # random init: no meta
    result = replies["s"]
    assert result.TYPE == "result", result
    assert result.resolution_used == 0.5 and result.resolution_note  # the scene's native 0.5 m, said why


def test_a_failed_load_keeps_the_working_model_answering(scene: Path, tmp_path: Path) -> None:
    """Zero-shot without base weights fails; the trained model loaded before it still answers the next query."""
    out = io.StringIO()
    worker = Worker(out)
    requests = [Load(id="good", config="tiny", device="cpu"),
                Load(id="bad", mode="zero-shot", config="tiny", device="cpu"),
                Segment(id="after", raster=str(scene), phrases=("the bright roof",), output_dir=str(tmp_path),
                        tile_size=128, overlap=16),
                Shutdown(id="bye")]
    assert worker.serve([encode(r) for r in requests]) == 0
    replies = [decode(line) for line in out.getvalue().splitlines()]
    final = {m.id: m for m in replies if m.TYPE != "progress"}
    assert final["good"].TYPE == "loaded"
    assert final["bad"].TYPE == "error" and final["bad"].code == "weights", final["bad"]
    assert final["after"].TYPE == "result", final["after"]
    assert Path(final["after"].outputs.geojson).is_file()


def test_a_cancelled_run_removes_no_file_it_did_not_write(spawn, scene: Path, big_scene: Path, tmp_path: Path) -> None:
    """Two workers share an output folder and a request id; one is cancelled while the other writes its result
    and a user saves a file there: the cancelled run deletes none of them."""
    out = tmp_path / "shared"
    out.mkdir()
    slow, quick = spawn(), spawn()
    _load(slow)
    _load(quick)
    slow.send(Segment(id="same", raster=str(big_scene), phrases=("all tanks",), output_dir=str(out),
                      mode="find-all", tile_size=64, overlap=8))
    while (message := slow.recv()).TYPE != "progress" or not message.message.startswith("tile 2/"):
        assert message.TYPE == "progress", message
    (out / "notes.txt").write_text("saved by the user during the run")
    quick.send(Segment(id="same", raster=str(scene), phrases=("the bright roof",), output_dir=str(out),
                       tile_size=128, overlap=16))
    _, result = quick.until("same", ("result", "error"))
    assert result.TYPE == "result", result
    slow.send(Cancel(id="c", target="same"))
    _, final = slow.until("same", ("error", "result"))
    assert final.TYPE == "error" and final.code == "cancelled", final
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "rsrefseg_same.geojson", "rsrefseg_same.gpkg"]
    assert "removing" not in slow.stderr()
