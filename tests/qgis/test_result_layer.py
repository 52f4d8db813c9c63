"""Result files become layers, each styled in its own colour; saving into a GeoPackage never overwrites anything."""

from __future__ import annotations

from pathlib import Path

from osgeo import ogr, osr
from qgis.core import QgsProject, QgsVectorLayer, QgsWkbTypes

from rsrefseg2_qgis.result_layer import layer_name, memory_copy, save_to_geopackage
from rsrefseg2_qgis.result_style import PALETTE, next_colour, style_result


def _write_geojson(path: Path) -> Path:
    """Two squares in EPSG:32633 with the engine's attributes, written by OGR."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    source = ogr.GetDriverByName("GeoJSON").CreateDataSource(str(path))
    table = source.CreateLayer("result", srs, ogr.wkbPolygon)
    for name, kind in (("query", ogr.OFTString), ("score", ogr.OFTReal), ("area_m2", ogr.OFTReal),
                       ("model", ogr.OFTString), ("checkpoint", ogr.OFTString)):
        table.CreateField(ogr.FieldDefn(name, kind))
    for i, x in enumerate((603_010.0, 603_050.0)):
        feature = ogr.Feature(table.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({x} 5339900,{x + 10} 5339900,{x + 10} 5339910,{x} 5339910,{x} 5339900))"))
        for key, value in (("query", "the tank"), ("score", 0.5 + i / 10), ("area_m2", 100.0),
                           ("model", "tiny"), ("checkpoint", "")):
            feature.SetField(key, value)
        table.CreateFeature(feature)
    source = None
    return path


def test_layer_name_is_short_and_counts_phrases() -> None:
    assert layer_name(("the large white storage tank",)) == "rsrefseg: the large white storage tank"
    long = layer_name(("the building " * 10,))
    assert len(long) <= len("rsrefseg: ") + 40 and long.endswith("…")
    assert layer_name(("a", "b", "c")) == "rsrefseg: a (+2)"


def test_memory_copy_keeps_attributes_and_crs(tmp_path: Path) -> None:
    path = _write_geojson(tmp_path / "result.geojson")
    layer = memory_copy(str(path), name="rsrefseg: the tank", crs_wkt="")
    path.unlink()  # the copy must not depend on the worker's file
    assert layer.featureCount() == 2 and layer.crs().authid() == "EPSG:32633"
    assert layer.fields().names() == ["query", "score", "area_m2", "model", "checkpoint"]
    assert layer.wkbType() == QgsWkbTypes.Type.MultiPolygon
    assert sorted(f["score"] for f in layer.getFeatures()) == [0.5, 0.6]


def test_each_result_gets_its_own_readable_style_with_the_score(tmp_path: Path) -> None:
    project = QgsProject.instance()
    colours = []
    for phrase in ("the tank", "the pond", "the road"):
        layer = memory_copy(str(_write_geojson(tmp_path / f"{phrase}.geojson")), name=f"rsrefseg: {phrase}",
                            crs_wkt="")
        style_result(layer, next_colour(project))
        project.addMapLayer(layer)
        symbol = layer.renderer().symbol()
        fill, outline = symbol.symbolLayer(0), symbol.symbolLayer(symbol.symbolLayerCount() - 1)
        assert 0 < fill.color().alpha() < 128, "a light fill: the object stays visible under it"
        assert outline.color().alpha() == 255 and outline.width() >= 0.5
        colours.append(outline.color().name())
        assert layer.labelsEnabled() and "score" in layer.labeling().settings().fieldName
        assert "score" in layer.mapTipTemplate()
        assert "best score 0.60" in layer.abstract()
    assert len(set(colours)) == 3 and colours[0] == PALETTE[0]
    project.removeAllMapLayers()
    assert next_colour(project).name() == PALETTE[0]  # colours free up with the layers


def test_saving_twice_adds_a_second_table(tmp_path: Path) -> None:
    layer = memory_copy(str(_write_geojson(tmp_path / "result.geojson")), name="rsrefseg: the tank", crs_wkt="")
    gpkg = str(tmp_path / "results.gpkg")
    first = save_to_geopackage(layer, gpkg, QgsProject.instance())
    second = save_to_geopackage(layer, gpkg, QgsProject.instance())
    assert first.isValid() and second.isValid()
    assert first.source().endswith("layername=the tank") and second.source().endswith("layername=the tank_2")
    reopened = QgsVectorLayer(f"{gpkg}|layername=the tank", "check", "ogr")
    assert reopened.featureCount() == 2 and reopened.crs().authid() == "EPSG:32633"
