"""``Notices``: the plugin's one line in the QGIS message bar, always the newest.

``QgsMessageBar`` stacks messages: when a timed message expires, the one under it shows again. A failure that
stays until dismissed would so come back, stale, after every later success. ``Notices`` removes the plugin's
previous message before it pushes the next, so the bar only ever shows the latest outcome.
"""

from __future__ import annotations

from qgis.core import Qgis
from qgis.gui import QgsMessageBar, QgsMessageBarItem
from qgis.PyQt import sip

from .i18n import tr

SUCCESS_SECONDS = 8


class Notices:
    """Pushes the plugin's messages to ``message_bar`` (None: drops them), replacing its previous one.

    Args:
        message_bar: ``iface.messageBar()``, or None where there is no GUI.
    """

    def __init__(self, message_bar: QgsMessageBar | None) -> None:
        self.message_bar = message_bar
        self._item: QgsMessageBarItem | None = None

    def show(self, text: str, level: Qgis.MessageLevel, duration: int | None = None) -> None:
        """Replace the plugin's message with ``text``.

        Args:
            text: the message.
            level: Success, Info, Warning or Critical.
            duration: seconds before it goes; None = ``SUCCESS_SECONDS`` for success, until dismissed otherwise.
        """
        if self.message_bar is None:
            return
        self.clear()
        if duration is None:
            duration = SUCCESS_SECONDS if level == Qgis.MessageLevel.Success else 0
        self._item = QgsMessageBarItem(tr("RSRefSeg 2"), text, level, duration)
        self.message_bar.pushItem(self._item)

    def clear(self) -> None:
        """Remove the plugin's message if it is still shown."""
        item, self._item = self._item, None
        if item is not None and self.message_bar is not None and not sip.isdeleted(item):
            self.message_bar.popWidget(item)
