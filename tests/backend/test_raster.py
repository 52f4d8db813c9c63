"""Raster input: views, band selection, windowed reads and the refusals users meet first."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp
from rasters import gradient_rgb, write_geotiff

from backend.errors import BackendError
from backend.raster.normalize import stretch_for_view
from backend.raster.reading import make_view, read_tile, read_whole


@pytest.fixture
def rgb_tif(tmp_path):
    return write_geotiff(tmp_path / "rgb.tif", gradient_rgb(120, 160))


def test_view_from_extent_and_resolution_is_georeferenced(rgb_tif):
    # Raster: 0.5 m pixels from (500000, 4000000); extent covers source cols 20..100, rows 10..70.
    view = make_view(str(rgb_tif), extent=(500010.0, 3999965.0, 500050.0, 3999995.0), resolution=1.0)
    assert view.shape == (30, 40)
    assert view.window == (20.0, 10.0, 80.0, 60.0)
    assert view.transform @ (0, 0) == (500010.0, 3999995.0)
    assert view.resolution == (1.0, 1.0)
    data, valid = read_tile(view, 0, 0, 30, 40)
    with rasterio.open(rgb_tif) as src:
        source = src.read(window=((10, 70), (20, 100))).astype(np.float32)
    expected = source.reshape(3, 30, 2, 40, 2).mean(axis=(2, 4))  # 2×2 average = the resampled read
    assert valid.all()
    np.testing.assert_allclose(data, expected, atol=0.51)


def test_tiles_read_the_same_pixels_as_the_whole_view_and_pad_outside(rgb_tif):
    view = make_view(str(rgb_tif), resolution=0.8)
    whole, _ = read_tile(view, 0, 0, *view.shape)
    tile, valid = read_tile(view, 20, 30, 32, 32)
    np.testing.assert_array_equal(tile, whole[:, 20:52, 30:62])
    edge, edge_valid = read_tile(view, view.shape[0] - 10, view.shape[1] - 8, 32, 32)
    assert edge_valid[:10, :8].all() and not edge_valid[10:].any() and not edge_valid[:, 8:].any()
    assert (edge[:, 10:] == 0).all()


def test_pixel_window_and_single_band_replication(tmp_path):
    data = gradient_rgb(64, 64, "uint16")[:1]
    path = write_geotiff(tmp_path / "pan.tif", data)
    view = make_view(str(path), pixels=(8, 4, 32, 16))
    assert view.bands == (1, 1, 1) and view.shape == (16, 32)
    read, _ = read_tile(view, 0, 0, 16, 32)
    np.testing.assert_array_equal(read[0], data[0, 4:20, 8:40])
    np.testing.assert_array_equal(read[0], read[2])


def test_declared_rgb_bands_are_preferred(tmp_path):
    data = gradient_rgb(32, 32)
    four = np.concatenate([data[:1] * 0, data[::-1]])  # band 1 = alpha-less junk, bands 2..4 = B, G, R
    path = write_geotiff(tmp_path / "bgr.tif", four)
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.undefined, ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    assert make_view(str(path)).bands == (4, 3, 2)
    assert make_view(str(path), bands=[2, 3, 4]).bands == (2, 3, 4)


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_other_dtypes_and_nodata_mask(tmp_path, dtype):
    data = gradient_rgb(40, 40, dtype)
    data[:, :10, :] = -1 if dtype != "uint16" else 0
    path = write_geotiff(tmp_path / f"{dtype}.tif", data, nodata=-1 if dtype != "uint16" else 0)
    view = make_view(str(path))
    read, valid = read_tile(view, 0, 0, 40, 40)
    assert read.dtype == np.float32
    assert not valid[:10].any() and valid[10:].mean() > 0.99
    stretch = stretch_for_view(view)
    assert all(lo > 0 for lo in stretch.low)  # nodata excluded from the percentiles


def test_read_whole_is_decimated(rgb_tif):
    data, valid = read_whole(make_view(str(rgb_tif)), 40)
    assert data.shape == (3, 30, 40) and valid.shape == (30, 40)


def expect(code, func, *args, **kwargs):
    with pytest.raises(BackendError) as info:
        func(*args, **kwargs)
    assert info.value.code == code
    assert info.value.message and info.value.hint
    return info.value


def test_refusals(tmp_path, rgb_tif):
    text = tmp_path / "notes.txt"
    text.write_text("not a raster")
    expect("not_a_raster", make_view, str(text))
    expect("not_a_raster", make_view, str(tmp_path / "missing.tif"))
    bare = write_geotiff(tmp_path / "bare.tif", gradient_rgb(16, 16), crs=None, transform=Affine.identity())
    expect("no_crs", make_view, str(bare))
    err = expect("bad_band", make_view, str(rgb_tif), bands=[1, 2, 7])
    assert "7" in err.message and "3 band" in err.message
    expect("window_outside", make_view, str(rgb_tif), extent=(0, 0, 10, 10))
    expect("window_outside", make_view, str(rgb_tif), pixels=(500, 0, 10, 10))
    empty = write_geotiff(tmp_path / "empty.tif", np.zeros((3, 32, 32), np.uint8), nodata=0)
    expect("all_nodata", stretch_for_view, make_view(str(empty)))
    err = expect("too_large", make_view, str(rgb_tif), resolution=0.01, max_pixels=100_000)
    assert "pixels" in err.message and "resolution" in err.hint


def test_eight_bit_imagery_keeps_its_colours(tmp_path):
    # A bluish 8-bit scene: a per-band stretch would remove the cast and turn a white roof pink or grey; models
    # are trained on 8-bit pictures as they are, so the run's stretch is the identity.
    data = gradient_rgb(40, 40, "uint8")
    data[2] = np.clip(data[2].astype(int) + 60, 0, 255).astype(np.uint8)
    view = make_view(str(write_geotiff(tmp_path / "blue.tif", data)))
    read, valid = read_tile(view, 0, 0, 40, 40)
    rgb = stretch_for_view(view).apply(read, valid)
    np.testing.assert_array_equal(rgb, data.transpose(1, 2, 0))
