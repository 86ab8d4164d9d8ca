"""A small live plot of training loss and validation error (QPainter, no plotting library).

Two log-scaled y axes (loss on the left, validation error in pixels on the right) against the
training step, with markers, tick values, axis titles and a legend, in the colours of napari's
current theme.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

SERIES = {
    "loss": ("loss", QColor("#4da3ff")),
    "val_error_px": ("validation error (px)", QColor("#ff9f43")),
}
MARGIN = (44, 10, 44, 30)  # left, top, right, bottom (pixels)


def theme_colours(viewer) -> dict[str, QColor]:
    """Background, text and grid colours of napari's current theme (dark fallback)."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        bg, fg = theme.canvas.as_hex(), theme.text.as_hex()
        grid = theme.secondary.as_hex() if theme.type == "dark" else theme.foreground.as_hex()
        dark = theme.type == "dark"
    except Exception:  # noqa: BLE001 - no viewer or an unknown theme: a dark default
        bg, fg, grid, dark = "#262930", "#f0f1f2", "#414851", True
    return {"background": QColor(bg), "text": QColor(fg), "grid": QColor(grid), "dark": dark}


class LossPlot(QWidget):
    """Loss (left axis) and validation error in pixels (right axis) against training step."""

    def __init__(self, parent=None, viewer=None):
        super().__init__(parent)
        self.viewer = viewer
        self.points: dict[str, list[tuple[float, float]]] = {k: [] for k in SERIES}
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setToolTip(
            "Training loss (left axis, log scale) and the median validation error in "
            "pixels (right axis) against the training step"
        )

    def clear(self) -> None:
        for values in self.points.values():
            values.clear()
        self.update()

    def add(self, entry: dict) -> None:
        """Add what a training log message holds (``step`` and ``loss``/``val_error_px``)."""
        for key in SERIES:
            value = entry.get(key)
            if value is not None and math.isfinite(value) and value > 0:
                self.points[key].append((float(entry["step"]), float(value)))
        self.update()

    def set_history(self, history) -> None:
        """Show a saved training history (``model.json``'s ``history``)."""
        self.clear()
        for entry in history or []:
            self.add(entry)

    def paintEvent(self, event):  # noqa: N802 - Qt's name
        colours = theme_colours(self.viewer)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), colours["background"])
        painter.setPen(colours["text"])
        left, top, right, bottom = MARGIN
        area = QRectF(left, top, self.width() - left - right, self.height() - top - bottom)
        if not any(self.points.values()):
            painter.drawText(self.rect(), Qt.AlignCenter, "loss and validation error appear here")
            return
        x_max = max(p[0] for values in self.points.values() for p in values) or 1.0
        painter.setPen(QPen(colours["grid"], 1))
        painter.drawRect(area)
        painter.setPen(colours["text"])
        painter.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), 14), Qt.AlignLeft, "0"
        )
        painter.drawText(
            QRectF(area.left(), area.bottom() + 2, area.width(), 14), Qt.AlignRight, f"{x_max:.0f}"
        )
        painter.drawText(
            QRectF(area.left(), area.bottom() + 14, area.width(), 14),
            Qt.AlignHCenter,
            "training step",
        )
        for side, key in ((0, "loss"), (1, "val_error_px")):
            self._series(painter, area, key, side, x_max)
        self._legend(painter, area)

    def _series(self, painter, area: QRectF, key: str, side: int, x_max: float) -> None:
        pts = self.points[key]
        if not pts:
            return
        logs = [math.log10(v) for _, v in pts]
        lo, hi = min(logs), max(logs)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5

        def to_xy(p):
            return QPointF(
                area.left() + area.width() * p[0] / x_max,
                area.bottom() - area.height() * (math.log10(p[1]) - lo) / (hi - lo),
            )

        colour = SERIES[key][1]
        painter.setPen(QPen(colour, 1.5))
        for a, b in zip(pts, pts[1:], strict=False):
            painter.drawLine(to_xy(a), to_xy(b))
        painter.setBrush(colour)
        for p in pts:
            painter.drawEllipse(to_xy(p), 2.2, 2.2)
        painter.setPen(colour)
        x = 0 if side == 0 else area.right() + 3
        align = Qt.AlignRight if side == 0 else Qt.AlignLeft
        for value, y in ((10**hi, area.top()), (10**lo, area.bottom() - 12)):
            painter.drawText(QRectF(x, y, MARGIN[0] - 3, 14), align, f"{value:.3g}")

    def _legend(self, painter, area: QRectF) -> None:
        x = area.left() + 6
        for key, (name, colour) in SERIES.items():
            if not self.points[key]:
                continue
            painter.setPen(QPen(colour, 2))
            painter.drawLine(QPointF(x, area.top() + 9), QPointF(x + 12, area.top() + 9))
            painter.drawText(QPointF(x + 16, area.top() + 13), name)
            x += 22 + painter.fontMetrics().horizontalAdvance(name)
