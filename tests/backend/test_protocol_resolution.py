"""Protocol fields of automatic resolution and of one answer per phrase (INTERFACES items 2 and 3)."""

from __future__ import annotations

import json

import pytest

from backend.protocol import RESOLUTION_AUTO, Outputs, ProtocolError, Result, Segment, decode, encode

SEGMENT = {"type": "segment", "id": "7", "v": 1, "raster": "a.tif", "phrases": ["the tank"], "output_dir": "/tmp"}


def segment(**fields) -> Segment:
    return decode(json.dumps({**SEGMENT, **fields}))


def test_resolution_defaults_to_auto_and_accepts_numbers_and_null():
    assert segment().resolution == RESOLUTION_AUTO == "auto"
    assert segment(resolution=0.5).resolution == 0.5 and segment(resolution=2).resolution == 2.0
    assert segment(resolution=None).resolution is None
    for message in (segment(), segment(resolution=0.5), segment(resolution=None)):
        assert decode(encode(message)) == message


@pytest.mark.parametrize(("value", "words"), [("fine", "'auto' or null"), (0, "must be > 0"), (-1.5, "must be > 0"),
                                              (True, "expected float or str"), ([1], "expected float or str")])
def test_unusable_resolutions_are_refused_by_name(value, words):
    with pytest.raises(ProtocolError, match="segment.resolution") as info:
        segment(resolution=value)
    assert words in str(info.value)


def test_all_matches_is_a_boolean_defaulting_to_false():
    assert segment().all_matches is False and segment(all_matches=True).all_matches is True
    with pytest.raises(ProtocolError, match="segment.all_matches: expected true or false"):
        segment(all_matches=1)


def test_result_reports_the_resolution_used_and_why():
    result = Result(id="7", outputs=Outputs(geojson="a.geojson"), phrases=(), crs="", resolution_used=0.98,
                    resolution_note="0.98 m/px (automatic: the model was trained at 0.3–2 m/px)")
    assert decode(encode(result)) == result
    older = json.loads(encode(result))
    del older["resolution_used"], older["resolution_note"]  # a worker from before these fields
    assert decode(json.dumps(older)).resolution_used is None
