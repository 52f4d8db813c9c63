"""Write the bundled sample: a small aerial-like GeoTIFF with a projected CRS, and its ground truth.

``python -m training.make_sample [--out resources/sample]`` renders one scene with the same renderer as the
synthetic referring set (``training.scene``), so the demo model trained on that set works on the sample, and
writes:

- ``sample.tif``: 3-band uint8 RGB, deflate-compressed, tiled, in UTM zone 33N (EPSG:32633) at 0.5 m/px;
- ``sample_labels.tif``: uint8 instance labels on the same grid (0 = background, i = object i);
- ``sample_objects.json``: per object its label, kind, colour, size class and pixel bbox.

The output is a pure function of ``--seed``; files are written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from training.scene import Scene, render_scene

SAMPLE_SEED = 20251123
SAMPLE_SIZE = 512
SAMPLE_GSD_M = 0.5
SAMPLE_CRS = "EPSG:32633"
# Upper-left corner of the sample in the CRS above: farmland north of Vienna's airport, a plausible place.
SAMPLE_ORIGIN = (603_000.0, 5_340_000.0)


def _write_atomic_tif(path: Path, array: np.ndarray, profile: dict) -> None:
    """Write a (bands, H, W) array as a GeoTIFF through a temp file in the same folder, then rename."""
    fd, tmp = tempfile.mkstemp(suffix=".tif", dir=path.parent)
    os.close(fd)
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared sample must be world-readable
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_sample(out_dir: Path, scene: Scene, crs: str = SAMPLE_CRS,
                 origin: tuple[float, float] = SAMPLE_ORIGIN) -> Path:
    """Write ``scene`` as ``sample.tif`` + labels + object list into ``out_dir``; returns the GeoTIFF path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = scene.image.shape[:2]
    profile = {
        "driver": "GTiff", "height": height, "width": width, "crs": crs,
        "transform": from_origin(origin[0], origin[1], scene.gsd_m, scene.gsd_m),
        "compress": "deflate", "predictor": 2, "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    image_path = out_dir / "sample.tif"
    _write_atomic_tif(image_path, np.moveaxis(scene.image, -1, 0),
                      {**profile, "count": 3, "dtype": "uint8", "photometric": "RGB"})
    labels = np.zeros((height, width), np.uint8)
    records = []
    for label, obj in enumerate(scene.objects, start=1):
        labels[obj.mask] = label
        records.append({"label": label, "kind": obj.kind, "colour": obj.colour, "size": obj.size,
                        "bbox_px": list(obj.bbox)})
    _write_atomic_tif(out_dir / "sample_labels.tif", labels[None], {**profile, "count": 1, "dtype": "uint8"})
    tmp_json = out_dir / "sample_objects.json.tmp"
    tmp_json.write_text(json.dumps({"crs": crs, "gsd_m": scene.gsd_m, "objects": records}, indent=1) + "\n")
    os.replace(tmp_json, out_dir / "sample_objects.json")
    return image_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("resources/sample"), help="output folder")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED, help="scene seed (default: the bundled one)")
    args = parser.parse_args(argv)
    scene = render_scene(np.random.default_rng(args.seed), size=SAMPLE_SIZE, gsd_m=SAMPLE_GSD_M,
                         n_buildings=(6, 8), n_tanks=(3, 4), n_ponds=(1, 2))
    path = write_sample(args.out, scene)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) with {len(scene.objects)} objects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
