"""Hostile input to the worker: huge lines, bytes that are not UTF-8, stray cancels, broken rasters, unsafe texts.

The line-level tests drive a real ``python -m backend.worker`` subprocess over a binary pipe (it imports no torch
until a model is loaded, so they are quick); the others serve requests in-process with the tiny random model.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rasters import write_geotiff

from backend.errors import BackendError
from backend.loading import load_predictor
from backend.protocol import WARNING_STAGE, Cancel, Load, Ping, Segment, Shutdown, decode, encode
from backend.worker import MAX_LINE_BYTES, Worker, error_reply

ROOT = Path(__file__).resolve().parents[2]


class RawWorker:
    """A worker subprocess written to as bytes; replies are collected with their arrival times."""

    def __init__(self, tmp_path: Path) -> None:
        self.log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.worker"], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.replies: list[tuple[float, object]] = []
        self.arrived = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            with self.arrived:
                self.replies.append((time.monotonic(), decode(line.decode("utf-8"))))
                self.arrived.notify_all()

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def reply(self, req_id: str, timeout: float = 30.0) -> tuple[float, object]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(m.id == req_id for _, m in self.replies), timeout), (
                f"no reply for {req_id!r}; got {[m for _, m in self.replies]}")
            return next((t, m) for t, m in self.replies if m.id == req_id)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def raw_worker(tmp_path: Path):
    worker = RawWorker(tmp_path)
    yield worker
    worker.close()


def test_a_40_mib_line_is_refused_and_the_next_ping_answered_within_a_second(raw_worker: RawWorker) -> None:
    raw_worker.write((encode(Ping(id="warm")) + "\n").encode())
    raw_worker.reply("warm")
    garbage = b'{"type": "segment", "id": "huge", "phrases": ["' + b"x" * (40 << 20) + b'"]}\n'
    assert len(garbage) > MAX_LINE_BYTES
    raw_worker.write(garbage)
    sent = time.monotonic()  # the whole line is in the pipe: the worker has read all but the last 64 KiB
    raw_worker.write((encode(Ping(id="after")) + "\n").encode())
    answered, pong = raw_worker.reply("after")
    _, refused = raw_worker.reply("huge")
    assert pong.TYPE == "pong"
    assert refused.TYPE == "error" and refused.code == "bad_request" and "longer than" in refused.message
    assert answered - sent < 1.0, f"ping answered {answered - sent:.2f} s after a 40 MiB line"
    assert raw_worker.proc.poll() is None


def test_bytes_that_are_not_utf8_get_a_coded_error_at_once(raw_worker: RawWorker) -> None:
    raw_worker.write(b'{"type": "ping", "id": "latin1", "v": 1, "note": "caf\xe9"}\n')
    _, reply = raw_worker.reply("latin1")
    assert reply.TYPE == "error" and reply.code == "bad_request" and "UTF-8" in reply.message
    raw_worker.write((encode(Ping(id="still")) + "\n").encode())
    assert raw_worker.reply("still")[1].TYPE == "pong"


def test_deeply_nested_json_is_refused_and_the_worker_keeps_answering(raw_worker: RawWorker) -> None:
    # Python's json parser recurses per nesting level: 100 000 brackets exceed the interpreter's stack limit.
    raw_worker.write(b'{"type": "ping", "id": "deep", "v": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    _, refused = raw_worker.reply("deep")
    assert refused.TYPE == "error" and refused.code == "bad_request" and "nested" in refused.message
    raw_worker.write((encode(Ping(id="alive")) + "\n").encode())
    assert raw_worker.reply("alive")[1].TYPE == "pong"


@pytest.mark.parametrize("number", [b"9" * 5000, b"-" + b"9" * 5000, b"1" + b"0" * 400])
def test_a_huge_integer_is_refused_and_the_worker_keeps_answering(raw_worker: RawWorker, number: bytes) -> None:
    """A 5000-digit literal made ``json.loads`` raise a plain ValueError, and the worker died with no reply."""
    raw_worker.write(b'{"type": "segment", "id": "big", "v": 1, "raster": "r.tif", "phrases": ["a"], '
                     b'"output_dir": "o", "tile_size": ' + number + b"}\n")
    _, refused = raw_worker.reply("big")
    assert refused.TYPE == "error" and refused.code == "bad_request" and "too large" in refused.message
    raw_worker.write((encode(Ping(id="alive")) + "\n").encode())
    assert raw_worker.reply("alive")[1].TYPE == "pong" and raw_worker.proc.poll() is None


def test_numbers_past_2_53_in_fields_are_refused_by_name() -> None:
    from backend.protocol import ProtocolError

    for field, value, problem in (("tile_size", 2**53 + 1, "the integer .* too large"),
                                  ("threshold", 10**300, "the integer .* too large"),
                                  ("resolution", -(10**20), "expected float or str")):
        line = ('{"type": "segment", "id": "s", "v": 1, "raster": "r.tif", "phrases": ["a"], "output_dir": "o", '
                f'"{field}": {value}}}')
        with pytest.raises(ProtocolError, match=f"segment.{field}: {problem}"):
            decode(line)


@pytest.mark.parametrize(("field", "literal"), [("threshold", "NaN"), ("threshold", "Infinity"), ("threshold", "1.5"),
                                                ("threshold", "0"), ("threshold", "-0.25"), ("resolution", "NaN"),
                                                ("resolution", "-Infinity"), ("resolution", "-5"), ("resolution", "0")])
def test_unusable_numbers_in_a_segment_line_are_refused_by_field_before_it_is_queued(field, literal) -> None:
    line = ('{"type": "segment", "id": "s", "v": 1, "raster": "r.tif", "phrases": ["a"], "output_dir": "o", '
            f'"{field}": {literal}}}')
    out = Replies()
    Worker(out).serve([line])  # no model is loaded, so only the message naming the field tells the two apart
    (reply,) = out.decoded()["s"]
    assert (reply.TYPE, reply.code) == ("error", "bad_request") and f"segment.{field}" in reply.message, reply


def test_a_nul_inside_a_phrase_is_refused_not_cut() -> None:
    out = Replies()
    Worker(out).serve(['{"type": "segment", "id": "s", "v": 1, "raster": "r.tif", "phrases": ["the roof\\u0000 '
                       'of the school"], "output_dir": "o"}'])
    (error,) = out.decoded()["s"]
    assert error.code == "bad_request" and "NUL" in error.message and "phrases[0]" in error.message


class Replies(io.StringIO):
    """The protocol stream of an in-process worker, decoded."""

    def decoded(self) -> dict[str, list]:
        by_id: dict[str, list] = {}
        for line in self.getvalue().splitlines():
            message = decode(line)
            by_id.setdefault(message.id, []).append(message)
        return by_id


def test_a_cancel_for_an_unknown_id_is_dropped_not_kept_for_a_later_request(tmp_path: Path) -> None:
    scene = write_geotiff(tmp_path / "scene.tif", (np.random.default_rng(0).random((3, 64, 64)) * 255)
                          .astype(np.uint8))
    out = Replies()
    worker = Worker(out)
    requests = [Load(id="load", config="tiny", device="cpu"), Cancel(id="c", target="later"),
                Segment(id="later", raster=str(scene), phrases=("the roof",), output_dir=str(tmp_path)),
                Shutdown(id="bye")]
    assert worker.serve([encode(r) for r in requests]) == 0
    replies = out.decoded()
    assert replies["later"][-1].TYPE == "result", replies["later"][-1]
    assert worker.pending_cancels == frozenset()


def test_a_truncated_raster_through_the_worker_is_a_coded_error_not_internal(tmp_path: Path, sample_tif) -> None:
    sample_tif.write_bytes(sample_tif.read_bytes()[:20000])
    vrt = tmp_path / "mosaic.vrt"
    vrt.write_text('<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>EPSG:32633</SRS>'
                   "<GeoTransform>0, 1, 0, 8, 0, -1</GeoTransform>"
                   '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
                   '<SourceFilename relativeToVRT="1">gone.tif</SourceFilename></SimpleSource></VRTRasterBand>'
                   "</VRTDataset>")
    out = Replies()
    requests = [Load(id="load", config="tiny", device="cpu"),
                Segment(id="cut", raster=str(sample_tif), phrases=("x",), output_dir=str(tmp_path)),
                Segment(id="vrt", raster=str(vrt), phrases=("x",), output_dir=str(tmp_path))]
    Worker(out).serve([encode(r) for r in requests])
    replies = out.decoded()
    for req_id, name in (("cut", "sample.tif"), ("vrt", "gone.tif")):
        (error,) = [m for m in replies[req_id] if m.TYPE == "error"]
        assert error.code == "bad_raster" and name in error.message, error


class Pickled:
    """A class torch's safe loader refuses: a file holding it is a pickle that could run code."""


TORCH_UNSAFE_ADVICE = ("weights_only", "Unpickler", "safe_globals", "trust the source")


def _torch_refusal(path: Path) -> Exception:
    """The exception torch raises for a general pickle under ``weights_only=True`` (nothing in it runs)."""
    try:
        torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 (whatever torch raises is what a user would otherwise read)
        return exc
    raise AssertionError("torch loaded a general pickle")


def test_torch_advice_to_load_unsafely_never_reaches_the_user(tmp_path: Path) -> None:
    evil = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.x": torch.zeros(1), "payload": Pickled()}, evil)
    refusal = _torch_refusal(evil)
    assert "weights_only" in str(refusal)  # what torch itself would tell the user

    quoted = BackendError("weights", f"cannot read SAM weights {evil.name}: {refusal}", "pass the official file")
    assert quoted.message.startswith("cannot read SAM weights sam_vit_b.pth: the file holds Python objects")
    assert ".safetensors" in quoted.message  # what to do instead
    internal = error_reply("r", refusal)  # an unforeseen error on the worker path
    for text in (quoted.message, quoted.hint, internal.message):
        assert not any(word in text for word in TORCH_UNSAFE_ADVICE), text
        assert "\x1b[" not in text  # torch's terminal colour codes are gone too
    assert internal.code == "internal"

    with pytest.raises(BackendError) as info:  # the whole loading path
        load_predictor(config="tiny", sam_weights=str(evil), device="cpu")
    err = info.value
    assert err.code == "weights" and "sam_vit_b.pth" in err.message
    assert not any(word in err.message + err.hint for word in TORCH_UNSAFE_ADVICE), err.message


def test_unsafe_advice_is_cut_only_where_it_starts() -> None:
    kept = BackendError("weights", "cannot read /data/weights_only_here/unpickled/sam.pth: file is damaged")
    assert kept.message == "cannot read /data/weights_only_here/unpickled/sam.pth: file is damaged"


def test_a_phrase_cut_to_the_token_limit_is_warned_about_with_the_kept_words(tmp_path: Path) -> None:
    scene = write_geotiff(tmp_path / "scene.tif", np.full((3, 64, 64), 90, np.uint8))
    words = ["the", "large", "red", "roof", "by", "a", "pond", "and", "tank"] * 4 + ["last"]  # a token each
    # The tiny text encoder reads 32 tokens: start, 30 words, end.
    out = Replies()
    requests = [Load(id="load", config="tiny", device="cpu"),
                Segment(id="long", raster=str(scene), phrases=("the roof", " ".join(words)), output_dir=str(tmp_path))]
    Worker(out).serve([encode(r) for r in requests])
    replies = out.decoded()["long"]
    warnings = [m for m in replies if m.TYPE == "progress" and m.stage == WARNING_STAGE]
    assert replies[-1].TYPE == "result" and len(warnings) == 1, replies
    message = warnings[0].message
    assert message.startswith("phrase 2 is longer than the model reads (32 tokens)")
    assert f'uses "{" ".join(words[:30])}" and ignores "{" ".join(words[30:36])} …"' in message


def test_a_lone_surrogate_in_a_request_is_refused_before_it_is_queued() -> None:
    out = Replies()
    line = ('{"type": "segment", "id": "s", "v": 1, "raster": "r.tif", "phrases": ["caf\\udce9"], '
            '"output_dir": "o"}')
    Worker(out).serve([line])
    (error,) = out.decoded()["s"]
    assert error.code == "bad_request" and "not valid Unicode" in error.message


def test_the_line_reader_bounds_lines_across_chunks_and_keeps_the_rest(monkeypatch) -> None:
    import os

    from backend import worker

    monkeypatch.setattr(worker, "READ_CHUNK_BYTES", 7)  # lines and limits straddle many reads
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"id": "a"}\n' + b"x" * 40 + b"\n" + b'{"id": "big", "pad": "' + b"y" * 60 + b'"}\n'
             + b'caf\xe9\n' + b"tail without newline")
    os.close(write_fd)
    lines = list(worker.read_lines(read_fd, max_bytes=40))
    os.close(read_fd)
    assert lines[0] == '{"id": "a"}' and lines[1] == "x" * 40  # exactly the limit is accepted
    assert isinstance(lines[2], worker._Invalid) and lines[2].req_id == "big"
    assert "longer than 40 bytes" in str(lines[2].problem)
    assert isinstance(lines[3], worker._Invalid) and "UTF-8" in str(lines[3].problem)
    assert lines[4] == "tail without newline" and len(lines) == 5


def test_a_hostile_sweep_of_segment_requests_gets_results_or_coded_errors_never_internal(tmp_path: Path) -> None:
    from affine import Affine
    from rasters import gradient_rgb

    from backend.protocol import Window

    scene = write_geotiff(tmp_path / "scene.tif", gradient_rgb(64, 64))
    rasters = {"one_px": write_geotiff(tmp_path / "one.tif", gradient_rgb(1, 1)),
               "nodata": write_geotiff(tmp_path / "nodata.tif", np.zeros((3, 32, 32), np.uint8), nodata=0),
               "pole": write_geotiff(tmp_path / "pole.tif", gradient_rgb(64, 64), crs="EPSG:4326",
                                     transform=Affine(1e-3, 0, 10.0, 0, -1e-3, 90.0)),
               "antimeridian": write_geotiff(tmp_path / "am.tif", gradient_rgb(64, 64), crs="EPSG:4326",
                                             transform=Affine(1e-3, 0, 179.99, 0, -1e-3, 0.0))}
    (tmp_path / "a_file").write_text("not a folder")
    cases = {  # id → (request fields, expected error code or None for a result)
        **{name: ({"raster": str(path)}, None) for name, path in rasters.items() if name != "nodata"},
        "nodata": ({"raster": str(rasters["nodata"])}, "all_nodata"),
        "raster_is_folder": ({"raster": str(tmp_path)}, "not_a_raster"),
        "raster_empty_path": ({"raster": ""}, "not_a_raster"),
        "output_is_a_file": ({"output_dir": str(tmp_path / "a_file")}, "bad_request"),
        "tile_larger_than_view": ({"tile_size": 10**6, "mode": "find-all"}, None),
        "resolution_1e-9": ({"resolution": 1e-9}, "too_large"),
        "resolution_1e-300": ({"resolution": 1e-300}, "too_large"),  # a view of ~10^600 pixels, not an overflow
        "resolution_denormal": ({"resolution": 5e-324}, "too_large"),
        "resolution_1e300": ({"resolution": 1e300}, "bad_request"),  # a 1×1 view: nothing the model could see
        "band_1e12": ({"bands": (10**12,)}, "bad_band"),
        "pixels_far_away": ({"window": Window(pixels=(10**15, 0, 5, 5))}, "window_outside"),
        "extent_of_all_floats": ({"window": Window(extent=(-1e308, -1e308, 1e308, 1e308))}, None),
        "phrase_with_nul": ({"phrases": ("a\x00b",)}, "bad_request"),  # the stored query would be cut there
        "phrase_with_escapes": ({"phrases": ("\x1b[31mred\x1b[0m",)}, None),
        "phrase_emoji_rtl": ({"phrases": ("🛢️ tank", "خزان النفط")}, None),
        "phrase_zero_width": ({"phrases": ("\u200b",)}, "empty_query"),
        "phrase_invisible_mix": ({"phrases": ("\u200c\u200d\u2060\ufeff\u180e\u3164 \u00ad",)}, "empty_query"),
        "phrase_second_invisible": ({"phrases": ("the roof", "\u2800\u200b")}, "empty_query"),
        "phrase_digits_only": ({"phrases": ("42",)}, None),
        "tile_size_2e53": ({"tile_size": 2**53 + 1, "mode": "find-all"}, "bad_request"),
    }
    requests = [Load(id="load", config="tiny", device="cpu")]
    requests += [Segment(id=name, **{"raster": str(scene), "phrases": ("the roof",), "output_dir": str(tmp_path),
                                     **fields}) for name, (fields, _) in cases.items()]
    out = Replies()
    Worker(out).serve([encode(r) for r in requests])
    replies = out.decoded()
    for name, (_, code) in cases.items():
        final = replies[name][-1]
        assert (final.TYPE, getattr(final, "code", None)) == ("result" if code is None else "error", code), final


def test_a_hostile_sweep_of_load_requests_gets_coded_errors_never_internal(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RSREFSEG2_WEIGHTS_DIR", str(tmp_path / "weights"))
    partial = tmp_path / "partial.json"
    partial.write_text('{"arch": "rsrefseg2"}')
    garbage = tmp_path / "model.safetensors"
    garbage.write_bytes(bytes(range(256)) * 8)
    cases = {  # id → (request fields, expected error code)
        "config_missing_keys": ({"config": str(partial)}, "checkpoint"),
        "config_is_a_folder": ({"config": str(tmp_path)}, "checkpoint"),
        "config_empty_text": ({"config": ""}, "checkpoint"),  # not "the default big model, randomly initialised"
        "checkpoint_garbage": ({"checkpoint": str(garbage)}, "checkpoint"),
        "device_gpu7": ({"config": "tiny", "device": "gpu7"}, "device"),
        "device_cuda_minus_1": ({"config": "tiny", "device": "cuda:-1"}, "device"),
        "device_meta": ({"config": "tiny", "device": "meta"}, "device"),
        "sam_weights_text_file": ({"config": "tiny", "sam_weights": str(partial)}, "weights"),
    }
    out = Replies()
    Worker(out).serve([encode(Load(id=name, **fields)) for name, (fields, _) in cases.items()])
    replies = out.decoded()
    for name, (_, code) in cases.items():
        (reply,) = replies[name]
        assert (reply.TYPE, getattr(reply, "code", None)) == ("error", code), reply
