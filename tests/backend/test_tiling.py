"""Tile grids, core stitching, tile-independent normalisation and bounded memory."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
from rasters import gradient_rgb, write_geotiff

from backend.output.vectorize import vectorize
from backend.raster.normalize import estimate_stretch, stretch_for_view
from backend.raster.reading import make_view, read_tile, read_whole
from backend.raster.tiling import ProbabilityCanvas, tile_grid


@pytest.mark.parametrize(("shape", "tile", "overlap"), [((100, 130), 32, 8), ((64, 64), 64, 16),
                                                         ((20, 300), 50, 0), ((97, 41), 30, 29)])
def test_cores_partition_the_view(shape, tile, overlap):
    owner = np.zeros(shape, np.int32)
    for t in tile_grid(shape, tile, overlap):
        r0, r1, c0, c1 = t.core
        assert t.row_off <= r0 < r1 <= t.row_off + t.height and t.col_off <= c0 < c1 <= t.col_off + t.width
        assert t.row_off + t.height <= shape[0] and t.col_off + t.width <= shape[1]
        owner[r0:r1, c0:c1] += 1
    assert (owner == 1).all()


def test_bad_grid_arguments():
    with pytest.raises(ValueError, match="overlap"):
        tile_grid((10, 10), 8, 8)


def stitched(data, valid, stretch, tile, overlap, in_memory_bytes=2**30):
    """Stitch a per-pixel function of the normalised image through a tile grid."""
    shape = valid.shape
    with ProbabilityCanvas(shape=shape, in_memory_bytes=in_memory_bytes) as canvas:
        for t in tile_grid(shape, tile, overlap):
            sl = np.s_[t.row_off:t.row_off + t.height, t.col_off:t.col_off + t.width]
            rgb = stretch.apply(data[:, sl[0], sl[1]], valid[sl])
            canvas.write_core(t, rgb.mean(axis=2) / 255.0)
        return np.array(canvas.array)


def test_stitch_and_normalisation_do_not_depend_on_the_grid(tmp_path):
    path = write_geotiff(tmp_path / "img.tif", gradient_rgb(150, 170, "uint16"))
    view = make_view(str(path))
    data, valid = read_tile(view, 0, 0, *view.shape)
    stretch = stretch_for_view(view)
    whole = (stretch.apply(data, valid).mean(axis=2) / 255.0).astype(np.float32)
    small = stitched(data, valid, stretch, 40, 10)
    large = stitched(data, valid, stretch, 96, 32, in_memory_bytes=1)  # the memory-mapped path
    np.testing.assert_array_equal(small, whole)
    np.testing.assert_array_equal(large, whole)
    # A per-tile stretch would disagree: the run's stretch is the whole view's, not a tile's.
    tile_stretch = estimate_stretch(data[:, :40, :40], valid[:40, :40])
    assert tile_stretch != stretch


def test_stretch_maps_percentiles_to_full_range():
    data = np.stack([np.linspace(0, 1000, 10000, dtype=np.float32).reshape(100, 100)] * 3)
    valid = np.ones((100, 100), bool)
    stretch = estimate_stretch(data, valid)
    assert stretch.low[0] == pytest.approx(20, abs=0.2) and stretch.high[0] == pytest.approx(980, abs=0.2)
    rgb = stretch.apply(data, valid)
    assert rgb.shape == (100, 100, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and rgb[50, 0, 0] == 128


def test_canvas_spills_to_disk_and_cleans_up(tmp_path):
    with ProbabilityCanvas(shape=(64, 64), in_memory_bytes=1000, directory=str(tmp_path)) as canvas:
        assert canvas.on_disk
        canvas.array[:] = 0.5
        assert float(canvas.array.mean()) == 0.5
        (folder,) = tmp_path.iterdir()  # this process's canvas folder
        assert folder.name.startswith("rsrefseg-canvas-") and folder.name.endswith(f"-{os.getpid()}")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not ProbabilityCanvas(shape=(8, 8)).on_disk


def test_peak_memory_scales_with_the_tile_not_the_raster(tmp_path):
    tile, size = 128, 1024  # the raster holds 64 tiles
    yy, xx = np.mgrid[0:size, 0:size]
    disc = ((yy - 300) ** 2 + (xx - 200) ** 2 < 150**2).astype(np.uint8)  # an object crossing many tiles
    path = write_geotiff(tmp_path / "big.tif", np.stack([disc * 200 + 20] * 3))
    view = make_view(str(path))
    raster_f32_bytes = size * size * 4
    tile_f32_bytes = tile * tile * 4
    tracemalloc.start()
    try:
        stretch = estimate_stretch(*read_whole(view, tile))
        with ProbabilityCanvas(shape=view.shape, in_memory_bytes=tile_f32_bytes, directory=str(tmp_path)) as canvas:
            assert canvas.on_disk
            for t in tile_grid(view.shape, tile, 16):
                rgb = stretch.apply(*read_tile(view, t.row_off, t.col_off, t.height, t.width))
                canvas.write_core(t, rgb[..., 0] / 255.0)
            detections = vectorize(canvas.array, view.transform, view.crs, block_pixels=tile * tile)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(detections) == 1 and detections[0].area_px == pytest.approx(disc.sum())
    # The peak is a few copies of one tile's 3-band float32 read (the stretch sample is tile-sized here; numpy's
    # percentile copies it once or twice more depending on its version: 0.77 MiB with numpy 1.24), far below the
    # single-band float32 map of the whole raster (4 MiB) that an in-memory stitch would hold.
    assert peak < 6 * 3 * tile_f32_bytes < raster_f32_bytes / 3, f"peak {peak / 2**20:.2f} MiB"
