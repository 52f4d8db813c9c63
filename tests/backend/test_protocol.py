"""The worker protocol: every message survives encode → decode, and bad lines fail with a named reason."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from backend.protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Bye,
    Cancel,
    Click,
    Error,
    Load,
    Loaded,
    Outputs,
    PhraseSummary,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Refine,
    Result,
    Segment,
    Shutdown,
    Window,
    decode,
    encode,
    request_id,
)

EXAMPLES = [
    Ping(id="1"),
    Load(id="2", config="tiny", device="cpu"),
    Load(id="3", checkpoint="/m/ckpt.safetensors", clip_weights="clip-vit-b-16", sam_weights="/w/sam.pth",
         device="cuda:1", mode="zero-shot"),
    Segment(id="4", raster="/data/scene.tif", phrases=("the white tank", "le bâtiment rouge"), output_dir="/tmp/o"),
    Segment(id="5", raster="a.tif", phrases=("x",), output_dir="o", window=Window(extent=(1.5, 2.0, 30.0, 40.25)),
            resolution=0.5, bands=(3, 2, 1), mode="find-all", refine="box", tile_size=256, overlap=32,
            threshold=0.3),
    Segment(id="6", raster="a.tif", phrases=("x",), output_dir="o", window=Window(pixels=(0, 10, 64, 32))),
    Cancel(id="7", target="4"),
    Shutdown(id="8"),
    Refine(id="9", raster="a.tif", phrases=("the tank",), output_dir="o", probability=True,
           clicks=(Click(x=500100.5, y=4000200.0, include=False), Click(x=500120.0, y=4000210.0)),
           box=(500000.0, 4000100.0, 500300.0, 4000400.0)),
    Pong(id="1", protocol=PROTOCOL_VERSION, backend_version="0.1.0"),
    Loaded(id="2", model="rsrefseg2 tiny (random init)", device="cpu"),
    Progress(id="4", fraction=0.25, stage="encode", message="tile 1/4"),
    Result(id="9", outputs=Outputs(geojson="/tmp/o/b.geojson", gpkg="/tmp/o/b.gpkg", probability="/tmp/o/b.tif"),
           phrases=(PhraseSummary(query="the tank", count=1, score=0.7, area_m2=80.0),), crs="EPSG:32633"),
    Result(id="4", outputs=Outputs(geojson="/tmp/o/a.geojson", gpkg=None),
           phrases=(PhraseSummary(query="the white tank", count=2, score=0.8, area_m2=310.5),
                    PhraseSummary(query="le bâtiment rouge", count=0, score=None, area_m2=None)),
           crs='PROJCS["WGS 84 / UTM zone 33N"]', timings={"read": 0.1, "vectorize": 0.02}),
    Error(id="4", code="cancelled", message="cancelled by the user", hint=""),
    Bye(id="8"),
    Loaded(id="3", model="rsrefseg2 · CLIP tiny-clip 64px", device="cuda:0", title="Demo model — synthetic scenes only",
           description="Knows coloured roofs, tanks and ponds.", gsd_range_m=(0.3, 2.0)),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: f"{m.TYPE}-{m.id}")
def test_round_trip(message) -> None:
    line = encode(message)
    assert "\n" not in line
    data = json.loads(line)
    assert (data["type"], data["id"], data["v"]) == (message.TYPE, message.id, PROTOCOL_VERSION)
    assert decode(line) == message
    assert decode(line + "\n") == message


def test_every_message_type_has_an_example() -> None:
    assert {m.TYPE for m in EXAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize(("fields", "reason"), [
    ({"clicks": []}, "at least one click"),
    ({"phrases": ["a", "b"], "clicks": [{"x": 1, "y": 2}]}, "one phrase"),
    ({"mode": "find-all", "clicks": [{"x": 1, "y": 2}]}, "one phrase in view mode"),
    ({"box": [5, 0, 1, 9]}, "xmin < xmax"),
    ({"clicks": [{"x": 1, "y": "north"}]}, r"clicks\[0\]\.y: expected a number"),
])
def test_a_bad_refine_names_its_reason(fields: dict, reason: str) -> None:
    line = json.dumps({"type": "refine", "id": "r", "v": PROTOCOL_VERSION, "raster": "a.tif", "phrases": ["x"],
                       "output_dir": "o", **fields})
    with pytest.raises(ProtocolError, match=reason):
        decode(line)


def test_wire_shape_matches_the_contract() -> None:
    seg = json.loads(encode(EXAMPLES[4]))
    assert seg["window"] == {"extent": [1.5, 2.0, 30.0, 40.25]}
    assert seg["phrases"] == ["x"] and seg["bands"] == [3, 2, 1]
    res = json.loads(encode(EXAMPLES[13]))
    assert res["outputs"] == {"geojson": "/tmp/o/a.geojson", "gpkg": None, "probability": None}
    assert res["phrases"][0] == {"query": "the white tank", "count": 2, "score": 0.8, "area_m2": 310.5}
    assert "le bâtiment rouge" in encode(EXAMPLES[3])  # UTF-8 text, not \u escapes


def test_defaults_fill_optional_fields() -> None:
    msg = decode('{"type": "segment", "id": "a", "v": 1, "raster": "r.tif", "phrases": ["p"], "output_dir": "o"}')
    assert msg == Segment(id="a", raster="r.tif", phrases=("p",), output_dir="o")
    assert msg.window is None and msg.mode == "view"
    assert decode('{"type":"load","id":"b","v":1,"config":"tiny"}') == Load(id="b", config="tiny")


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    msg = decode('{"type":"progress","id":"a","v":1,"fraction":1,"stage":"done"}')
    assert msg.fraction == 1.0 and isinstance(msg.fraction, float)


@pytest.mark.parametrize(("line", "named"), [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"id": "1", "v": 1}', "'type'"),
    ('{"type": "teleport", "id": "1", "v": 1}', "teleport"),
    ('{"type": "ping", "id": "1"}', "'v'"),
    ('{"type": "ping", "id": "1", "v": 2}', "version 2"),
    ('{"type": "ping", "v": 1}', "'id'"),
    ('{"type": "ping", "id": 5, "v": 1}', "ping.id"),
    ('{"type": "cancel", "id": "1", "v": 1}', "'target'"),
    ('{"type": "segment", "id": "1", "v": 1, "phrases": ["a"], "output_dir": "o"}', "'raster'"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": "a", "output_dir": "o"}',
     "segment.phrases"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": [], "output_dir": "o"}', "at least one"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"mode": "everything"}', "segment.mode"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"window": {"extent": [0, 0, 1]}}', "segment.window.extent"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"window": {}}', "exactly one"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"tile_size": 64, "overlap": 64}', "overlap"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"tile_size": true}', "segment.tile_size"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"refine": "sharpen"}', "segment.refine"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["a"], "output_dir": "o", '
     '"overlap": -1}', "overlap"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "r", "phrases": ["caf\\udce9"], "output_dir": "o"}',
     "segment.phrases[0]: not valid Unicode"),
    ('{"type": "segment", "id": "1", "v": 1, "raster": "\\ud800.tif", "phrases": ["a"], "output_dir": "o"}',
     "segment.raster: not valid Unicode"),
    ('{"type": "load", "id": "1", "v": 1}', "checkpoint"),
    ('{"type": "load", "id": "1", "v": 1, "config": "tiny", "mode": "fast"}', "load.mode"),
    ('{"type": "progress", "id": "1", "v": 1, "fraction": 1.5, "stage": "x"}', "progress.fraction"),
    ('{"type": "result", "id": "1", "v": 1, "outputs": {"geojson": "a"}, "crs": "", "phrases": '
     '[{"query": "q", "count": 1, "score": 0.5}]}', "'area_m2'"),
])
def test_bad_lines_name_the_problem(line: str, named: str) -> None:
    with pytest.raises(ProtocolError, match=None) as info:
        decode(line)
    assert named in str(info.value)


def test_encode_rejects_non_messages_and_nan() -> None:
    with pytest.raises(ProtocolError):
        encode(Window(pixels=(0, 0, 1, 1)))
    with pytest.raises(ValueError):
        encode(Result(id="1", outputs=Outputs(geojson="a"), phrases=(), crs="", timings={"x": float("nan")}))


def test_request_id_survives_undecodable_lines() -> None:
    assert request_id('{"type": "teleport", "id": "r9", "v": 1}') == "r9"
    assert request_id("garbage") == ""
    assert request_id('{"id": 3}') == ""
    assert request_id('{"type": "ping", "id": "\\ud800", "v": 1}') == ""  # an id no reply could carry


def test_protocol_imports_no_heavy_library() -> None:
    code = ("import sys, backend.protocol; heavy = {'torch', 'numpy', 'rasterio', 'qgis'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_deeply_nested_json_is_a_protocol_error_not_a_crash() -> None:
    deep = '{"type": "ping", "id": "d", "v": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(deep)
    assert request_id(deep) == ""
