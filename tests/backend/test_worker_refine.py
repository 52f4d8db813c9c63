"""The worker's ``refine`` request: the demo model on the sample, clicks decoded on the cached view."""

from __future__ import annotations

import io
import json
from pathlib import Path

import rasterio
import shapely
from shapely.geometry import shape

from backend.protocol import Click, Load, Refine, Segment, Window, decode, encode
from backend.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample" / "sample.tif"
DEMO = ROOT / "resources" / "models" / "demo-synthetic.safetensors"
PHRASE = "the red building at the top left"


def _serve(worker: Worker, out: io.StringIO, *requests) -> dict[str, object]:
    """Serve ``requests`` in order; returns the final reply (result, loaded or error) of each, by id."""
    start = len(out.getvalue())
    worker.serve([encode(r) for r in requests])
    replies = [decode(line) for line in out.getvalue()[start:].splitlines()]
    return {r.id: r for r in replies if r.TYPE in ("result", "loaded", "error")}


def _answer(result) -> shapely.Geometry:
    features = json.loads(Path(result.outputs.geojson).read_text(encoding="utf-8"))["features"]
    return shapely.union_all([shape(f["geometry"]) for f in features])


def test_refine_edits_the_answer_on_the_cached_view_and_never_encodes(tmp_path: Path) -> None:
    out = io.StringIO()
    worker = Worker(out)
    replies = _serve(worker, out, Load(id="load", checkpoint=str(DEMO), device="cpu"),
                     Segment(id="s1", raster=str(SAMPLE), phrases=(PHRASE,), output_dir=str(tmp_path),
                             probability=True))
    assert replies["load"].TYPE == "loaded" and replies["s1"].TYPE == "result", replies
    first = _answer(replies["s1"])
    with rasterio.open(replies["s1"].outputs.probability) as src, rasterio.open(SAMPLE) as sample:
        assert src.crs == sample.crs and src.count == 1 and src.nodata is not None
        assert (src.read(1) > 0.5).any()
    centre = first.representative_point()
    encoder = worker._engine.predictor.model.sam_head.image_encoder
    calls = []
    encoder.register_forward_hook(lambda *_: calls.append(1))

    replies = _serve(worker, out,
                     Refine(id="r1", raster=str(SAMPLE), phrases=(PHRASE,), output_dir=str(tmp_path),
                            clicks=(Click(centre.x, centre.y, include=False),)),
                     Refine(id="r2", raster=str(SAMPLE), phrases=(PHRASE,), output_dir=str(tmp_path),
                            clicks=(Click(centre.x, centre.y, include=False), Click(centre.x, centre.y))),
                     # Another window of the sample was never segmented: its features are not cached.
                     Refine(id="r3", raster=str(SAMPLE), phrases=(PHRASE,), output_dir=str(tmp_path),
                            window=Window(extent=(centre.x - 60, centre.y - 60, centre.x + 60, centre.y + 60)),
                            clicks=(Click(centre.x, centre.y),)))
    assert replies["r1"].TYPE == "result", replies["r1"]
    assert not _answer(replies["r1"]).covers(centre)
    assert replies["r2"].TYPE == "result" and _answer(replies["r2"]).covers(centre)  # the later click wins
    assert replies["r3"].TYPE == "error" and replies["r3"].code == "not_cached" and "again" in replies["r3"].hint
    assert calls == []
