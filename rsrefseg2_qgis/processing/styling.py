"""Style a Processing result the way the dock styles its layers, once QGIS loads it into the project."""

from __future__ import annotations

from qgis.core import QgsProcessingContext, QgsProcessingLayerPostProcessorInterface, QgsVectorLayer
from qgis.PyQt import sip

from ..result_style import next_colour, style_result


class ResultStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives a loaded output layer its own colour, the score labels and the map tip (see ``result_style``)."""

    def postProcessLayer(self, layer, context: QgsProcessingContext, feedback) -> None:  # noqa: N802 (QGIS's name)
        if isinstance(layer, QgsVectorLayer):
            style_result(layer, next_colour(context.project()))


# ``setPostProcessor`` hands the styler to QGIS, which deletes it once the run's layer is loaded: each run gets
# its own, and the Python side keeps it until QGIS has deleted it (a batch has several waiting at once).
_WAITING: list[ResultStyler] = []


def style_on_load(context: QgsProcessingContext, layer_id: str) -> None:
    """Style the output ``layer_id`` when QGIS loads it at the end of the run (no-op when it is not loaded)."""
    if context.willLoadLayerOnCompletion(layer_id):
        _WAITING[:] = [styler for styler in _WAITING if not sip.isdeleted(styler)]
        styler = ResultStyler()
        _WAITING.append(styler)
        context.layerToLoadOnCompletionDetails(layer_id).setPostProcessor(styler)
