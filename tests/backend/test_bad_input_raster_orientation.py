"""Rasters that read wrong without a word: south-up grids, colour tables, float64 beyond float32, zero pixel sizes,
VRTs whose sources are named pipes.

Real GeoTIFFs and VRTs written with rasterio; the views are read back with the engine's own readers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasters import gradient_rgb, write_geotiff

from backend.errors import BackendError
from backend.raster.normalize import stretch_for_view
from backend.raster.reading import make_view, read_tile, read_whole

NORTH_UP = Affine(0.5, 0, 500000.0, 0, -0.5, 4000000.0)


def north_up_and_south_up(tmp_path, image: np.ndarray):
    """The same ground written twice: north-up, and south-up (rows stored bottom first, positive y size)."""
    height = image.shape[1]
    north = write_geotiff(tmp_path / "north.tif", image, transform=NORTH_UP)
    south_grid = Affine(0.5, 0, 500000.0, 0, 0.5, 4000000.0 - 0.5 * height)
    south = write_geotiff(tmp_path / "south.tif", np.ascontiguousarray(image[:, ::-1]), transform=south_grid)
    return north, south


def test_a_south_up_raster_reads_north_up_with_the_same_ground_in_the_same_place(tmp_path):
    image = gradient_rgb(300, 280)
    image[:, :40, :40] = 255  # a white block in the map's top left (the north-west)
    north, south = north_up_and_south_up(tmp_path, image)
    north_view, south_view = make_view(str(north)), make_view(str(south))
    assert south_view.transform == north_view.transform and south_view.transform.e < 0
    north_data, _ = read_tile(north_view, 0, 0, *north_view.shape)
    south_data, _ = read_tile(south_view, 0, 0, *south_view.shape)
    np.testing.assert_array_equal(south_data, north_data)
    assert (south_data[:, :40, :40] == 255).all()  # "top left" is the map's top left
    # A tile that straddles the edge, an extent and a coarser resolution agree too.
    np.testing.assert_array_equal(read_tile(south_view, 250, 200, 100, 100)[0], read_tile(north_view, 250, 200,
                                                                                          100, 100)[0])
    extent = (500010.0, 3999900.0, 500100.0, 3999990.0)
    for kwargs in ({"extent": extent}, {"resolution": 1.5}, {"extent": extent, "resolution": 2.0}):
        a, b = make_view(str(north), **kwargs), make_view(str(south), **kwargs)
        assert a.transform == pytest.approx(b.transform) and a.shape == b.shape
        np.testing.assert_allclose(read_tile(b, 0, 0, *b.shape)[0], read_tile(a, 0, 0, *a.shape)[0], atol=1)
    np.testing.assert_allclose(read_whole(south_view, 64)[0], read_whole(north_view, 64)[0], atol=1)


def test_a_paletted_raster_is_read_in_its_colours_not_as_grey(tmp_path):
    indices = np.zeros((1, 64, 64), np.uint8)
    indices[0, :32] = 1
    indices[0, 32:, 32:] = 2
    path = write_geotiff(tmp_path / "classes.tif", indices, nodata=2)
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, {0: (0, 128, 0, 255), 1: (200, 30, 30, 255), 2: (0, 0, 0, 255)})
    view = make_view(str(path))
    data, valid = read_tile(view, 0, 0, *view.shape)
    assert view.dtypes == ("uint8",) * 3
    assert tuple(data[:, 0, 0]) == (200, 30, 30) and tuple(data[:, 40, 0]) == (0, 128, 0)
    assert not valid[40:, 40:].any() and valid[:32].all()  # the nodata index stays no data
    coarse = make_view(str(path), resolution=4.0)  # coarser: indices are picked, never averaged into others
    colours = {tuple(c) for c in read_tile(coarse, 0, 0, *coarse.shape)[0].reshape(3, -1).T}
    assert colours <= {(200, 30, 30), (0, 128, 0), (0, 0, 0)}


def test_float64_values_beyond_float32_range_are_data_not_nodata(tmp_path):
    values = np.broadcast_to(np.linspace(1e39, 1e40, 32 * 32).reshape(1, 32, 32), (3, 32, 32)).astype(np.float64)
    path = write_geotiff(tmp_path / "huge.tif", np.ascontiguousarray(values))
    view = make_view(str(path))
    data, valid = read_tile(view, 0, 0, *view.shape)
    assert valid.all() and np.isfinite(data).all()
    rgb = stretch_for_view(view).apply(data, valid)
    assert rgb.min() == 0 and rgb.max() == 255  # the stretch spans the values, nothing is blanked


@pytest.mark.parametrize("geotransform", ["500000, 0, 0, 4000000, 0, -0.5", "500000, 0.5, 0, 4000000, 0, 0"])
def test_a_zero_pixel_size_is_refused_not_answered_with_nothing(tmp_path, geotransform):
    write_geotiff(tmp_path / "tile.tif", gradient_rgb(32, 32))
    path = tmp_path / "flat.vrt"  # a VRT keeps the geotransform as written (a GeoTIFF drops a zero scale)
    path.write_text('<VRTDataset rasterXSize="32" rasterYSize="32"><SRS>EPSG:32633</SRS>'
                    f'<GeoTransform>{geotransform}</GeoTransform>'
                    '<VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="1">'
                    'tile.tif</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    with pytest.raises(BackendError) as info:
        make_view(str(path))
    assert info.value.code == "bad_raster" and "pixel size of zero" in info.value.message
    assert "flat.vrt" in info.value.message and "gdal" in info.value.hint


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("nested", [False, True])
def test_a_vrt_whose_source_is_a_named_pipe_is_refused_instead_of_hanging(tmp_path, nested):
    """Run in a child process with a deadline: before the fix the read waited for ever on the pipe."""
    os.mkfifo(tmp_path / "tile.tif")
    band = ('<VRTRasterBand dataType="Byte" band="1"><SimpleSource><SourceFilename relativeToVRT="1">{}'
            '</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>')
    head = ('<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>EPSG:32633</SRS>'
            '<GeoTransform>500000, 0.5, 0, 4000000, 0, -0.5</GeoTransform>')
    (tmp_path / "inner.vrt").write_text(head + band.format("tile.tif") + "</VRTDataset>")
    top = tmp_path / "mosaic.vrt"
    top.write_text(head + band.format("inner.vrt" if nested else "tile.tif") + "</VRTDataset>")
    script = textwrap.dedent(f"""
        from backend.errors import BackendError
        from backend.raster.reading import make_view, read_tile
        try:
            view = make_view({str(top)!r})
            read_tile(view, 0, 0, *view.shape)
        except BackendError as err:
            print(err.code, "|", err.message, "|", err.hint)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    code, message, hint = (part.strip() for part in done.stdout.split("|"))
    assert code == "not_a_raster" and "tile.tif" in message and "pipe" in message and hint
