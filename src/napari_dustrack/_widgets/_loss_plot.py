"""A small live plot of training loss and validation error (QPainter, no plotting library)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

SERIES = {"loss": QColor("#4da3ff"), "val_error_px": QColor("#ff9f43")}


class LossPlot(QWidget):
    """Loss (blue) and validation error in pixels (orange) against training step, log scale."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: dict[str, list[tuple[float, float]]] = {k: [] for k in SERIES}
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

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

    def paintEvent(self, event):  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor(30, 30, 30))
        all_pts = [p for values in self.points.values() for p in values]
        if len(all_pts) < 2:
            painter.setPen(QColor(160, 160, 160))
            painter.drawText(self.rect(), Qt.AlignCenter, "loss / validation error (px)")
            return
        x_max = max(p[0] for p in all_pts) or 1.0
        logs = [math.log10(p[1]) for p in all_pts]
        lo, hi = min(logs), max(logs)
        hi = hi if hi > lo else lo + 1.0
        w, h, m = self.width(), self.height(), 6

        def to_xy(p):
            return QPointF(m + (w - 2 * m) * p[0] / x_max,
                           h - m - (h - 2 * m) * (math.log10(p[1]) - lo) / (hi - lo))

        for key, colour in SERIES.items():
            pts = self.points[key]
            painter.setPen(QPen(colour, 1.5))
            for a, b in zip(pts, pts[1:]):
                painter.drawLine(to_xy(a), to_xy(b))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(m, m + 10, f"{10 ** hi:.3g}")
        painter.drawText(m, h - m, f"{10 ** lo:.3g}")
