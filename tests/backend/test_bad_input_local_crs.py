"""Rasters in a CRS without an EPSG code (second hostile sweep): a local engineering grid (WKT ``LOCAL_CS`` and WKT 2
``ENGCRS``) or a custom projection. GDAL's GeoJSON writer drops such a CRS, so the GeoJSON read back as WGS 84; both
outputs must read back in the raster's CRS (the GeoJSON carries it as WKT in its legacy ``crs`` member).

Real runs of ``python -m backend segment`` with the tiny model on GeoTIFFs written with those CRSs; the outputs are
read back with pyogrio (GDAL), as QGIS reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasters import write_geotiff

from backend.cli import main
from backend.output.vectorize import Detection
from backend.output.writing import PhraseDetections, output_paths, write_outputs

LOCAL_CS = ('LOCAL_CS["site grid",LOCAL_DATUM["site datum",0],UNIT["metre",1,AUTHORITY["EPSG","9001"]],'
            'AXIS["Easting",EAST],AXIS["Northing",NORTH]]')
ENGCRS = ('ENGCRS["Local site",EDATUM["Site datum"],CS[Cartesian,2],AXIS["x",east,ORDER[1],LENGTHUNIT["metre",1]],'
          'AXIS["y",north,ORDER[2],LENGTHUNIT["metre",1]]]')
CUSTOM_TM = ('PROJCS["custom TM",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
             'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
             'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",13.3],PARAMETER["scale_factor",1],'
             'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1],AXIS["Easting",EAST],'
             'AXIS["Northing",NORTH]]')
CASES = {"local_cs": LOCAL_CS, "engcrs": ENGCRS, "custom_tm": CUSTOM_TM}


def _read_back(path) -> CRS | None:
    text = pyogrio.read_info(str(path))["crs"]
    return CRS.from_user_input(text) if text else None


@pytest.mark.parametrize("wkt", CASES.values(), ids=CASES.keys())
def test_segment_outputs_read_back_in_the_rasters_own_crs(tmp_path, wkt) -> None:
    data = (np.random.default_rng(5).random((3, 128, 128)) * 200).astype(np.uint8)
    tif = write_geotiff(tmp_path / "site.tif", data, crs=wkt, transform=Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0))
    with rasterio.open(tif) as src:
        raster_crs = src.crs
    assert raster_crs.to_epsg() is None
    out = tmp_path / "result.gpkg"
    assert main(["segment", str(tif), "the white tank", "-o", str(out), "--config", "tiny", "--device", "cpu",
                 "--threshold", "0.01"]) == 0
    for path in (out, out.with_suffix(".geojson")):
        assert _read_back(path) == raster_crs, (path.name, pyogrio.read_info(str(path))["crs"])
    geojson = json.loads(out.with_suffix(".geojson").read_text())
    assert geojson["crs"]["type"] == "name" and CRS.from_wkt(geojson["crs"]["properties"]["name"]) == raster_crs


@pytest.mark.parametrize("crs", [CRS.from_wkt(LOCAL_CS), CRS.from_epsg(32633), CRS.from_epsg(4326)],
                         ids=["local_cs", "utm", "wgs84"])
def test_written_polygons_keep_coordinates_and_crs(tmp_path, crs) -> None:
    """Written directly: the polygon's coordinates and CRS read back the same from both files; EPSG CRSs keep
    GDAL's own authority label."""
    polygon = shapely.box(1000.0, 1990.0, 1010.0, 2000.0)
    detection = Detection(geometry=polygon, score=0.9, area_m2=100.0, area_px=400.0)
    layers = [PhraseDetections("the white tank", (detection,))]
    paths = write_outputs(layers, crs, output_paths(str(tmp_path), "out"), model="tiny", checkpoint="none")
    for path in paths.values():
        assert _read_back(path) == crs
        _, _, geometry, _ = pyogrio.raw.read(path)
        assert shapely.from_wkb(geometry[0]).equals(polygon)
    member = json.loads(Path(paths["geojson"]).read_text(encoding="utf-8")).get("crs")
    if crs.to_epsg() == 32633:
        assert member == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    elif crs.to_epsg() == 4326:
        assert member == {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
