"""The Measure tab's plots: x(t), y(t) and a measure over time, in napari's theme colours.

Long series are thinned to their min/max envelope; the current-frame line is animated and
blitted over a saved background (a full redraw of the figure takes 100-500 ms, a blit a few ms).
"""

from __future__ import annotations

import numpy as np

from ..io.table import labels_of, to_array
from ..measure.plotting import envelope, isolated
from ._loss_plot import theme_colours
from .common import REVIEW_KEY, current_frame, set_frame

LINESTYLES = ("-", "--", ":", "-.")
PLOT_POINTS = 1200  # per line: the envelope of a long series, ~3 points per screen pixel


class MeasurePlot:
    """Part of :class:`~napari_dustrack._widgets.measure.MeasureWidget`: drawing the plots."""

    def time_of(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(frames, float) * self.calibration().frame_interval

    def frame_at(self, t: float) -> int:
        return int(round(t / self.calibration().frame_interval))

    def _draw(self) -> None:
        if not self.isVisible():
            self._stale = True
            return
        cal = self.calibration()
        unit = cal.length_unit
        for ax in (self.ax_x, self.ax_y, self.ax_m):
            ax.clear()
        self.lines = {}
        colours = self.label_colours()
        layers = [layer for layer in self.checked_layers() if layer.name in self.tables]
        n = self.n_frames()
        t_all = self.time_of(np.arange(n))
        theme = self._theme()
        for k, layer in enumerate(layers):
            style = LINESTYLES[k % len(LINESTYLES)]
            table = self.tables[layer.name]
            # Dense (frame, label) arrays: NaN where a point is missing breaks the line there.
            xy, layer_labels = to_array(table, labels_of(table), n)
            phys = cal.to_physical(xy)
            for j, label in enumerate(layer_labels):
                colour = np.array(colours[label]) / 255
                for ax, axis, c in ((self.ax_x, "x", 0), (self.ax_y, "y", 1)):
                    self.lines[(axis, layer.name, label)] = self._plot(
                        ax, t_all, phys[:, j, c], style, colour, label if k == 0 else None
                    )
            column = self.plot_combo.currentText()
            result = self.results.get(layer.name)
            if column and result is not None and column in result:
                self.lines[("measure", layer.name, column)] = self._plot(
                    self.ax_m,
                    self.time_of(result["frame"]),
                    result[column].to_numpy(),
                    style,
                    theme["text"],
                    layer.name,
                    lw=1.2,
                )
            self._mark_review(layer)
        self._decorate(cal, unit, layers, theme)
        self.redraws += 1
        self._background = None
        self.canvas.draw_idle()

    def _plot(self, ax, t, y, style, colour, label, lw=1.0):
        """One line (thinned when long) plus markers on values a line cannot show (isolated)."""
        tt, yy = envelope(t, y, max_points=PLOT_POINTS)
        (line,) = ax.plot(tt, yy, style, color=colour, lw=lw, label=label)
        alone = isolated(y)
        if alone.any():
            ax.plot(np.asarray(t)[alone], np.asarray(y)[alone], "o", color=colour, ms=3)
        return line

    def _theme(self) -> dict:
        q = theme_colours(self.viewer)
        return {
            "background": q["background"].name(),
            "text": q["text"].name(),
            "grid": q["grid"].name(),
        }

    def _decorate(self, cal, unit, layers, theme) -> None:
        self.figure.set_facecolor(theme["background"])
        for ax in (self.ax_x, self.ax_y, self.ax_m):
            ax.set_facecolor(theme["background"])
            ax.tick_params(colors=theme["text"], labelsize="small")
            for spine in ax.spines.values():
                spine.set_color(theme["grid"])
            ax.grid(True, color=theme["grid"], lw=0.5, alpha=0.6)
            ax.yaxis.label.set_color(theme["text"])
            ax.xaxis.label.set_color(theme["text"])
        self.ax_x.set_ylabel(f"x [{unit}]")
        self.ax_y.set_ylabel(f"y [{unit}]")
        self.ax_m.set_ylabel(self.plot_combo.currentText() or "measure")
        self.ax_m.set_xlabel("time [s]" if cal.fps else "frame")
        legend_style = dict(
            fontsize="x-small",
            facecolor=theme["background"],
            edgecolor=theme["grid"],
            labelcolor=theme["text"],
        )
        if self._label_order and layers:
            self.ax_x.legend(ncol=3, loc="upper right", **legend_style)  # "best" scans every point
        if self.ax_m.lines:
            self.ax_m.legend(loc="upper right", **legend_style)
        t = self.time_of([current_frame(self.viewer)])[0] if self.viewer.dims.ndim >= 3 else 0.0
        # animated: left out of full draws and blitted over a saved background when the frame
        # changes (a full redraw of the figure takes 100-500 ms; a blit a few ms)
        self.frame_lines = [
            ax.axvline(t, color="r", lw=1, animated=True)
            for ax in (self.ax_x, self.ax_y, self.ax_m)
        ]

    def _mark_review(self, layer) -> None:
        frames = layer.metadata.get(REVIEW_KEY) if hasattr(layer, "metadata") else None
        if frames is None or len(frames) == 0:
            return
        t = self.time_of(np.asarray(frames, float))
        (line,) = self.ax_m.plot(
            t,
            np.zeros_like(t),
            "^",
            color="tab:orange",
            ms=6,
            clip_on=False,
            transform=self.ax_m.get_xaxis_transform(),
            label="to review",
        )
        self.lines[("review", layer.name, "")] = line

    def _on_frame(self, event=None) -> None:
        if (
            getattr(self, "frame_lines", None)
            and self.isVisible()
            and not self._frame_timer.isActive()
        ):
            self._frame_timer.start()

    def _on_canvas_drawn(self, event=None) -> None:
        """After a full draw: keep the figure without the frame lines, then blit them on it."""
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._blit_frame_lines()

    def _blit_frame_lines(self) -> None:
        for line in getattr(self, "frame_lines", ()):
            line.axes.draw_artist(line)
        self.canvas.blit(self.figure.bbox)

    def _move_frame_line(self) -> None:
        if not self.isVisible() or not getattr(self, "frame_lines", None):
            return
        t = self.time_of([current_frame(self.viewer)])[0]
        for line in self.frame_lines:
            line.set_xdata([t, t])
        if self._background is None:
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self._blit_frame_lines()

    def on_plot_click(self, event) -> None:
        """Move napari to the clicked frame (not while the toolbar zooms or pans)."""
        if event.inaxes is None or event.xdata is None or event.button != 1:
            return
        if str(self.toolbar.mode):  # "" unless zoom or pan is on
            return
        set_frame(self.viewer, self.frame_at(event.xdata))
