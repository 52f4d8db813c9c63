"""Damaged and oddly georeferenced rasters: refused at open time with a message naming the file and the problem.

Real files written with rasterio and then damaged on disk (cut, overwritten, a VRT pointing at nothing), as a
failed copy or download leaves them. Nothing is mocked.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasters import gradient_rgb, write_geotiff

from backend.errors import BackendError
from backend.raster.normalize import stretch_for_view
from backend.raster.reading import make_view, read_tile

WGS84_GRID = Affine(1e-5, 0, 10.0, 0, -1e-5, 50.0)  # ≈ 0.7 × 1.1 m pixels at 50° N


def refused(code: str, path, **kwargs) -> BackendError:
    with pytest.raises(BackendError) as info:
        view = make_view(str(path), **kwargs)
        read_tile(view, 0, 0, *view.shape)
    assert info.value.code == code, info.value
    assert info.value.hint
    return info.value


@pytest.fixture
def compressed_tif(tmp_path):
    """A 512×512 deflate-compressed, 256-px tiled GeoTIFF (four tiles)."""
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0), tiled=True, blockxsize=256,
                       blockysize=256, compress="deflate") as dst:
        dst.write(gradient_rgb(512, 512))
    return path


def test_a_geotiff_cut_in_half_is_refused_at_open_naming_the_file(compressed_tif):
    make_view(str(compressed_tif))  # whole: accepted (and its check remembered for this size and time)
    data = compressed_tif.read_bytes()
    compressed_tif.write_bytes(data[:len(data) // 2])
    with pytest.raises(BackendError) as info:
        make_view(str(compressed_tif))  # no pixel read yet: the check needs only the TIFF directory
    err = info.value
    assert err.code == "bad_raster" and "scene.tif" in err.message and "truncated" in err.message
    assert "again" in err.hint


def test_a_geotiff_cut_inside_its_header_is_truncated_not_unreferenced(compressed_tif):
    compressed_tif.write_bytes(compressed_tif.read_bytes()[:400])
    err = refused("bad_raster", compressed_tif)
    assert "truncated" in err.message


def test_a_damaged_block_fails_at_read_with_a_coded_error(compressed_tif):
    with rasterio.open(compressed_tif) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    data = bytearray(compressed_tif.read_bytes())
    data[offset:offset + 64] = b"\xff" * 64  # the file keeps its size; the deflate stream is broken
    compressed_tif.write_bytes(bytes(data))
    view = make_view(str(compressed_tif))
    with pytest.raises(BackendError) as info:
        read_tile(view, 256, 256, 256, 256)
    err = info.value
    assert err.code == "bad_raster" and "scene.tif" in err.message
    assert "previous exception" not in err.message  # GDAL's own reason, not rasterio's pointer to it


@pytest.mark.parametrize("content", [b"II*\x00" + bytes(range(256)) * 8, b"", b"\x00" * 4096])
def test_garbage_with_a_tif_name_is_not_a_raster(tmp_path, content):
    path = tmp_path / "garbage.tif"
    path.write_bytes(content)
    assert "garbage.tif" in refused("not_a_raster", path).message


def _vrt(tmp_path, source: str):
    path = tmp_path / "mosaic.vrt"
    path.write_text(f"""<VRTDataset rasterXSize="64" rasterYSize="64">
  <SRS>EPSG:32633</SRS>
  <GeoTransform>500000, 0.5, 0, 4000000, 0, -0.5</GeoTransform>
  <VRTRasterBand dataType="Byte" band="1">
    <SimpleSource><SourceFilename relativeToVRT="1">{source}</SourceFilename><SourceBand>1</SourceBand></SimpleSource>
  </VRTRasterBand>
</VRTDataset>
""")
    return path


def test_a_vrt_with_a_missing_source_names_the_missing_file(tmp_path):
    with pytest.raises(BackendError) as info:
        make_view(str(_vrt(tmp_path, "tile_0_0.tif")))
    err = info.value
    assert err.code == "bad_raster" and "mosaic.vrt" in err.message and "tile_0_0.tif" in err.message
    assert "gdalbuildvrt" in err.hint


def test_a_vrt_whose_source_is_truncated_fails_at_the_first_read(tmp_path, compressed_tif):
    compressed_tif.write_bytes(compressed_tif.read_bytes()[:2000])
    err = refused("bad_raster", _vrt(tmp_path, compressed_tif.name))
    assert "mosaic.vrt" in err.message


def test_a_raster_placed_by_gcps_says_so_and_how_to_warp_it(tmp_path):
    path = tmp_path / "scan.tif"
    gcps = [GroundControlPoint(row, col, 500000.0 + col, 4000000.0 - row) for row, col in
            ((0, 0), (0, 31), (31, 0), (31, 31))]
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8",
                       gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(gradient_rgb(32, 32))
    err = refused("no_crs", path)
    assert "4 ground control points" in err.message and "scan.tif" in err.message
    assert "gdalwarp" in err.hint


def test_a_crs_without_a_geotransform_is_refused(tmp_path):
    path = write_geotiff(tmp_path / "nogt.tif", gradient_rgb(16, 16), transform=Affine.identity())
    with rasterio.open(path) as src:
        assert src.crs is not None  # the CRS is there; only the pixel-to-map placement is missing
    assert "geotransform" in refused("no_crs", path).message


def test_metres_on_a_geographic_raster_are_refused_with_the_value_in_degrees(tmp_path):
    path = write_geotiff(tmp_path / "wgs84.tif", gradient_rgb(200, 300), crs="EPSG:4326", transform=WGS84_GRID)
    err = refused("bad_request", path, resolution=0.5)
    assert "degrees" in err.message and "1×1" in err.message
    assert "4.5e-06" in err.hint
    # Degrees (what the automatic resolution sends) and modest coarsening stay allowed.
    assert make_view(str(path), resolution=4.5e-6).shape == (444, 667)
    assert make_view(str(path), resolution=1e-4).shape == (20, 30)
    assert make_view(str(path), resolution=1e-3).shape == (2, 3)  # coarse, but a value in degrees, not metres


def test_a_healthy_sample_still_reads_whole(sample_tif):
    view = make_view(str(sample_tif))
    data, valid = read_tile(view, 0, 0, *view.shape)
    assert valid.all() and np.isfinite(data).all()
    stretch_for_view(view)


@pytest.mark.parametrize("area", [{"extent": (-np.inf, 0.0, np.inf, 1.0)}, {"extent": (np.nan, 0.0, 1.0, 1.0)},
                                  {"pixels": (0.0, 0.0, np.inf, 5.0)}, {"resolution": np.inf}])
def test_infinite_or_nan_numbers_are_refused_not_turned_into_a_tiny_view(sample_tif, area):
    err = refused("bad_request", sample_tif, **area)
    assert "finite" in err.message or "positive number" in err.message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_instead_of_waiting_forever(tmp_path):
    pipe = tmp_path / "stream.tif"
    os.mkfifo(pipe)  # GDAL would block opening it until something writes to it
    assert "not a regular file" in refused("not_a_raster", pipe).message


def test_a_raster_placed_by_rpcs_says_so_and_how_to_warp_it(tmp_path):
    from rasterio.rpc import RPC

    coeffs = [1.0] + [0.0] * 19
    rpcs = RPC(height_off=0.0, height_scale=100.0, lat_off=50.0, lat_scale=0.01, line_den_coeff=coeffs,
               line_num_coeff=[0.0, 0.0, -1.0] + [0.0] * 17, line_off=16.0, line_scale=16.0, long_off=10.0,
               long_scale=0.01, samp_den_coeff=coeffs, samp_num_coeff=[0.0, 1.0] + [0.0] * 18, samp_off=16.0,
               samp_scale=16.0)
    path = tmp_path / "satellite_l1.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", rpcs=rpcs) as dst:
        dst.write(gradient_rgb(32, 32))
    err = refused("no_crs", path)
    assert "rational polynomial coefficients" in err.message and "gdalwarp -rpc" in err.hint


def test_an_extent_as_large_as_floats_go_reads_the_whole_raster(sample_tif):
    whole = make_view(str(sample_tif))
    huge = make_view(str(sample_tif), extent=(-1e308, -1e308, 1e308, 1e308))
    assert (huge.shape, huge.window, huge.transform) == (whole.shape, whole.window, whole.transform)
    refused("window_outside", sample_tif, extent=(1e300, 1e300, 1e308, 1e308))
