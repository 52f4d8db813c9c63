"""How a result layer looks: its own colour from a palette, a light fill, a solid outline, the score as a label.

Colours are bright and saturated so that they read on aerial imagery (mostly greens, greys and browns); the fill
is mostly transparent so the object stays visible under it, and a thin dark edge under the outline keeps it
readable on bright roofs. Each new result takes the first palette colour no result layer in the project uses.
"""

from __future__ import annotations

from qgis.core import (
    QgsColorRampShader,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSimpleLineSymbolLayer,
    QgsSingleBandPseudoColorRenderer,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
    QgsWkbTypes,
)
from qgis.PyQt.QtGui import QColor, QFont

from .i18n import tr, tr_count

PALETTE = ("#ffd400", "#00e5ff", "#ff40c8", "#ff8c1a", "#7dff3a", "#ff3b3b", "#4d8dff", "#ffffff")
FILL_ALPHA = 60  # of 255: about a quarter opaque
OUTLINE_MM = 0.8
EDGE_MM = 1.3  # the dark edge drawn under the outline
COLOUR_PROPERTY = "rsrefseg2/colour"
SCORE_LABEL = "format_number(\"score\", 2)"
MAP_TIP = "<b>[% \"query\" %]</b><br>" + tr("score") + " [% format_number(\"score\", 2) %], [% " \
          "format_number(\"area_m2\", 0) %] m²"


def next_colour(project: QgsProject) -> QColor:
    """The first palette colour that no result layer in ``project`` has (cycling once all are taken)."""
    used = [layer.customProperty(COLOUR_PROPERTY) for layer in project.mapLayers().values()]
    used = [colour for colour in used if colour]
    for colour in PALETTE:
        if colour not in used:
            return QColor(colour)
    return QColor(PALETTE[len(used) % len(PALETTE)])


def style_result(layer: QgsVectorLayer, colour: QColor) -> None:
    """Give a polygon result layer its colour, a light fill, an outline, score labels, a map tip and an abstract.

    Args:
        layer: a layer with the engine's attributes (``query``, ``score``, ``area_m2``, …).
        colour: its colour (``next_colour``).
    """
    if layer.geometryType() != QgsWkbTypes.GeometryType.PolygonGeometry:
        return
    fill = QColor(colour)
    fill.setAlpha(FILL_ALPHA)
    symbol = QgsFillSymbol.createSimple({"color": fill.name(QColor.NameFormat.HexArgb), "style": "solid",
                                         "outline_style": "no"})
    edge = QgsSimpleLineSymbolLayer(QColor(0, 0, 0, 160), EDGE_MM)
    edge.setWidthUnit(QgsUnitTypes.RenderUnit.RenderMillimeters)
    outline = QgsSimpleLineSymbolLayer(QColor(colour), OUTLINE_MM)
    outline.setWidthUnit(QgsUnitTypes.RenderUnit.RenderMillimeters)
    symbol.appendSymbolLayer(edge)
    symbol.appendSymbolLayer(outline)
    layer.renderer().setSymbol(symbol)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(_score_labels(colour)))
    layer.setLabelsEnabled(True)
    layer.setMapTipTemplate(MAP_TIP)
    layer.setAbstract(_abstract(layer))
    layer.setCustomProperty(COLOUR_PROPERTY, QColor(colour).name())
    layer.triggerRepaint()


def _score_labels(colour: QColor) -> QgsPalLayerSettings:
    text = QgsTextFormat()
    font = QFont()
    font.setBold(True)
    text.setFont(font)
    text.setSize(9)
    text.setColor(QColor(colour))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(0, 0, 0))
    text.setBuffer(buffer)
    settings = QgsPalLayerSettings()
    settings.fieldName = SCORE_LABEL
    settings.isExpression = True
    settings.placement = QgsPalLayerSettings.Placement.OverPoint
    settings.setFormat(text)
    return settings


def _abstract(layer: QgsVectorLayer) -> str:
    """One line per phrase: how many objects and the best score (shown in the layer's tooltip)."""
    if layer.fields().indexOf("query") < 0 or layer.fields().indexOf("score") < 0:
        return ""
    best: dict[str, tuple[int, float]] = {}
    for feature in layer.getFeatures():
        count, score = best.get(feature["query"], (0, 0.0))
        best[feature["query"]] = (count + 1, max(score, float(feature["score"] or 0.0)))
    if not best:
        return tr("No object found.")
    return "\n".join(tr("'{query}': {objects}, best score {score:.2f}").format(
        query=query, objects=tr_count(count, "{count} object", "{count} objects"), score=score)
        for query, (count, score) in best.items())


def style_probability(layer: QgsRasterLayer, colour: QColor) -> None:
    """A probability raster (band 1, 0-1) drawn from transparent at 0 to ``colour`` at 1 (nodata stays clear)."""
    clear, full = QColor(colour), QColor(colour)
    clear.setAlpha(0)
    full.setAlpha(200)
    ramp = QgsColorRampShader(0.0, 1.0)
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(0.0, clear, "0"),
                               QgsColorRampShader.ColorRampItem(1.0, full, "1")])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
