"""Style a Processing result the way the dock styles its layers, once QGIS loads it into the project."""

from __future__ import annotations

from qgis.core import QgsProcessingContext, QgsProcessingLayerPostProcessorInterface, QgsVectorLayer

from ..result_style import next_colour, style_result


class ResultStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives a loaded output layer its own colour, the score labels and the map tip (see ``result_style``)."""

    def postProcessLayer(self, layer, context: QgsProcessingContext, feedback) -> None:  # noqa: N802 (QGIS's name)
        if isinstance(layer, QgsVectorLayer):
            style_result(layer, next_colour(context.project()))


# QGIS keeps only a pointer to a post-processor: one stateless instance lives as long as the module.
RESULT_STYLER = ResultStyler()


def style_on_load(context: QgsProcessingContext, layer_id: str) -> None:
    """Style the output ``layer_id`` when QGIS loads it at the end of the run (no-op when it is not loaded)."""
    if context.willLoadLayerOnCompletion(layer_id):
        context.layerToLoadOnCompletionDetails(layer_id).setPostProcessor(RESULT_STYLER)
