"""Small widgets of the dock whose size never follows their text, so the controls under and beside them stay put.

``FixedLinesLabel`` is a status line of a fixed number of text lines: a longer text is cut at its last line (the
whole text is in the tooltip). ``ElidedLabel`` is one line that ends in "…" when the text is wider than the dock.
Both keep their height whatever they show, so a Cancel button does not move between two clicks.
"""

from __future__ import annotations

from qgis.PyQt.QtCore import QRectF, Qt
from qgis.PyQt.QtGui import QPainter, QPaintEvent, QTextOption
from qgis.PyQt.QtWidgets import QLabel, QSizePolicy, QWidget


class FixedLinesLabel(QLabel):
    """A word-wrapped label exactly ``lines`` text lines high; its full text is also its tooltip.

    Args:
        lines: the number of text lines it shows.
        parent: the parent widget.
    """

    def __init__(self, lines: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        margins = self.contentsMargins()
        self.setFixedHeight(self.fontMetrics().lineSpacing() * lines + margins.top() + margins.bottom())

    def setText(self, text: str) -> None:  # noqa: N802 (Qt's name)
        """Show ``text`` (cut after the last line that fits) with all of it in the tooltip."""
        super().setText(text)
        self.setToolTip(text)


class ElidedLabel(QLabel):
    """A one-line label that elides its text on the right instead of widening its parent.

    Args:
        parent: the parent widget.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self.fontMetrics().lineSpacing() + self.contentsMargins().top()
                            + self.contentsMargins().bottom())

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt's name)
        """Draw the text cut to the label's width with a trailing "…"."""
        painter = QPainter(self)
        shown = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())
        painter.drawText(QRectF(self.contentsRect()), shown,
                         QTextOption(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter))
        painter.end()
