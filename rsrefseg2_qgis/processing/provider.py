"""The Processing provider ``rsrefseg2``."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .. import paths
from ..client import BackendClient
from ..i18n import tr
from .referring_segmentation import ReferringSegmentationAlgorithm


class RSRefSeg2Provider(QgsProcessingProvider):
    """Holds the algorithms; they share the plugin's worker client.

    Args:
        client: returns the worker client (created on first use).
    """

    def __init__(self, *, client: Callable[..., BackendClient]) -> None:
        super().__init__()
        self._client = client

    def id(self) -> str:
        return "rsrefseg2"

    def name(self) -> str:
        return tr("RSRefSeg 2")

    def icon(self) -> QIcon:
        return QIcon(paths.icon_path())

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS's name)
        self.addAlgorithm(ReferringSegmentationAlgorithm(client=self._client))
