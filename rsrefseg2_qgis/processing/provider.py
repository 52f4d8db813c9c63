"""The Processing provider ``rsrefseg2``."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsMapLayer, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .. import paths
from ..client import BackendClient
from ..i18n import tr
from .batch_segmentation import BatchReferringSegmentationAlgorithm
from .referring_segmentation import ReferringSegmentationAlgorithm


class RSRefSeg2Provider(QgsProcessingProvider):
    """Holds the algorithms; they share the plugin's worker client (and so its loaded model).

    Args:
        client: returns the worker client (created on first use).
        active_layer: returns QGIS's active layer, or None (headless): the algorithms' default input.
    """

    def __init__(self, *, client: Callable[..., BackendClient],
                 active_layer: Callable[[], QgsMapLayer | None] = lambda: None) -> None:
        super().__init__()
        self._client = client
        self._active_layer = active_layer

    def id(self) -> str:
        return "rsrefseg2"

    def name(self) -> str:
        return tr("RSRefSeg 2")

    def icon(self) -> QIcon:
        return QIcon(paths.icon_path())

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS's name)
        self.addAlgorithm(ReferringSegmentationAlgorithm(client=self._client, active_layer=self._active_layer))
        self.addAlgorithm(BatchReferringSegmentationAlgorithm(client=self._client))
