"""The Measure tab's plots: x(t), y(t) and a measure over time, in napari's theme colours.

The lines arrive ready to plot (:func:`._measure_data.layer_series`, computed with the
tables, in a worker thread for long cines); a redraw swaps the lines and keeps the axes, their
ticks and labels (clearing the axes makes matplotlib rebuild every tick on the next draw); many
points go on the axes one layer per event-loop turn. A full draw of the figure is done in
pieces, one axes per turn, into an off-screen renderer shown when complete. The current-frame
line is animated: it is drawn over a saved background and shown with a Qt ``update()`` that
joins napari's own repaint, never with a full draw of the figure nor a synchronous
``repaint()`` (a window flush of its own).
"""

from __future__ import annotations

import time
import weakref
from functools import partial

import numpy as np
from matplotlib.backend_bases import DrawEvent
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from qtpy.QtCore import QTimer

from ._loss_plot import theme_colours
from .common import REVIEW_KEY, current_frame, set_frame

# heavy work (recomputing, drawing the figure) waits until the frame has not changed for this
# long: while the user scrubs, every turn of the event loop goes to napari's slicing and paint
SETTLE_MS = 250

LINESTYLES = ("-", "--", ":", "-.")
SPLIT_POINTS = 20_000  # more plotted points than this: the lines go on one layer per turn


class PlotCanvas(FigureCanvasQTAgg):
    """The Measure figure's Qt canvas; once its tab is closed or deleted it draws nothing (a
    draw matplotlib queued before would otherwise run on a canvas being deleted)."""

    closed = False
    render = None  # the widget's full draw in pieces (a WeakMethod), in place of matplotlib's

    def draw_idle(self):
        """matplotlib's deferred full draw (resizes, toolbar zoom and pan): drawn in pieces."""
        render = self.render() if self.render is not None else None
        if render is None:
            super().draw_idle()
        else:
            render()

    def draw(self):
        if self.closed:
            return
        try:
            super().draw()
        except RuntimeError:  # "wrapped C/C++ object has been deleted": its tab went mid-draw
            if not self.closed:
                raise


class MeasurePlot:
    """Part of :class:`~napari_dustrack._widgets.measure.MeasureWidget`: drawing the plots."""

    def time_of(self, frames: np.ndarray) -> np.ndarray:
        return np.asarray(frames, float) * self.calibration().frame_interval

    def frame_at(self, t: float) -> int:
        return int(round(t / self.calibration().frame_interval))

    def _build_axes(self) -> None:
        self.ax_x, self.ax_y, self.ax_m = self.figure.subplots(3, 1, sharex=True)
        self.plotted = []  # the artists of the last draw (removed by the next one)
        # animated: left out of full draws, drawn over the saved background instead
        self.frame_lines = [
            ax.axvline(0.0, color="r", lw=1, animated=True)
            for ax in (self.ax_x, self.ax_y, self.ax_m)
        ]
        self._background = None
        self._render_generation = 0  # a newer full draw cancels the pieces of an older one
        self._rendering = self._render_again = False
        self._lines_generation, self._placing = 0, False  # newer lines cancel older ones
        self.canvas.render = weakref.WeakMethod(self._render)  # the canvas must not hold us
        self.canvas.mpl_connect("button_press_event", self.on_plot_click)
        self.canvas.mpl_connect("draw_event", self._on_canvas_drawn)

    def _draw(self) -> None:
        """Put the last computed lines on the axes (one layer per event-loop turn when there
        are many points), then draw the figure in pieces."""
        if self._closed or not self.isVisible():
            self._stale = True
            return
        for artist in self.plotted:
            artist.remove()
        self.plotted, self.lines = [], {}
        theme = self._theme()
        layers = [layer for layer in self.checked_layers() if layer.name in self.series]
        colours = self.label_colours()
        styles = [LINESTYLES[k % len(LINESTYLES)] for k in range(len(layers))]
        steps = [
            partial(self._plot_layer, layer, style, k == 0, colours, theme)
            for k, (layer, style) in enumerate(zip(layers, styles, strict=True))
        ] + [partial(self._finish_draw, layers, theme)]
        self._lines_generation += 1
        self._placing = True
        points = sum(len(line.t) for name in self.series for line in self.series[name].values())
        if points <= SPLIT_POINTS:
            for step in steps:
                step()
        else:
            self._run_steps(steps, self._lines_generation)

    _frame_changed_at = 0.0  # time.monotonic() of the last frame change

    def scrubbing(self) -> bool:
        """Whether the frame changed less than :data:`SETTLE_MS` ago."""
        return time.monotonic() - self._frame_changed_at < SETTLE_MS / 1000

    def _run_steps(self, steps, generation) -> None:
        if self._closed or generation != self._lines_generation:
            return  # closed, or newer lines are on their way
        if self.scrubbing():
            QTimer.singleShot(SETTLE_MS, lambda: self._run_steps(steps, generation))
            return
        steps[0]()
        if len(steps) > 1:
            QTimer.singleShot(0, lambda: self._run_steps(steps[1:], generation))

    def _finish_draw(self, layers, theme) -> None:
        self._placing = False
        for ax in (self.ax_x, self.ax_y, self.ax_m):
            ax.relim()
            ax.autoscale_view()
        self._decorate(layers, theme)
        self.redraws += 1
        self._place_frame_lines()
        self._render(restart=True)

    @property
    def drawing(self) -> bool:
        """True while the lines go on the axes or the figure is drawn (in pieces)."""
        return self._rendering or self._placing

    def _render(self, restart: bool = False) -> None:
        """A full draw of the figure split over event-loop turns, one axes per turn, into an
        off-screen renderer that is shown when complete: the loop is never held for the whole
        figure (~100 ms idle, several times that on a loaded machine). Requests while one is
        under way (a resize, the toolbar) are served by one more when it is done; new lines
        (``restart``) cancel it."""
        if self._closed or not self.isVisible():
            self._stale = True  # hidden: drawn when shown
            return
        if self._rendering and not restart:
            self._render_again = True
            return
        self._rendering, self._render_again = True, False
        self._render_generation += 1
        w, h = self.canvas.get_width_height(physical=True)
        renderer = RendererAgg(w, h, self.figure.dpi)
        pieces = [self.figure.patch.draw, self.ax_x.draw, self.ax_y.draw, self.ax_m.draw]
        self._render_piece(renderer, pieces, self._render_generation)

    def _render_piece(self, renderer, pieces, generation) -> None:
        if self._closed or generation != self._render_generation:
            return  # closed, or the figure changed (or matplotlib drew it whole) meanwhile
        if pieces and self.scrubbing():
            QTimer.singleShot(SETTLE_MS, lambda: self._render_piece(renderer, pieces, generation))
            return
        if pieces:
            pieces[0](renderer)
            QTimer.singleShot(0, lambda: self._render_piece(renderer, pieces[1:], generation))
            return
        self._rendering = False
        target = self.canvas.get_renderer()
        resized = (target.width, target.height) != (renderer.width, renderer.height)
        if self._render_again or resized:
            self._render()  # asked again (or resized) meanwhile
            return
        target.restore_region(renderer.copy_from_bbox(self.figure.bbox))
        self.figure.stale = False
        # what matplotlib's own draw announces (the frame lines go on top, tests count it)
        self.canvas.callbacks.process("draw_event", DrawEvent("draw_event", self.canvas, target))
        self.canvas.update()

    def _plot_layer(self, layer, style, first, colours, theme) -> None:
        """x(t) and y(t) of every label, the chosen measure and the review marks of a layer."""
        column = self.plot_combo.currentText()
        for (axis, key), series in self.series[layer.name].items():
            if axis == "measure":
                if key != column:
                    continue
                ax, colour, name, lw = self.ax_m, theme["text"], layer.name, 1.2
            else:
                ax = self.ax_x if axis == "x" else self.ax_y
                colour = np.array(colours.get(key, (128, 128, 128))) / 255
                name, lw = (key if first and axis == "x" else None), 1.0  # one legend entry
            self.lines[(axis, layer.name, key)] = self._plot(ax, series, style, colour, name, lw)
        self._mark_review(layer)

    def _plot(self, ax, series, style, colour, label, lw):
        """One line plus markers on values a line cannot show (isolated)."""
        (line,) = ax.plot(series.t, series.y, style, color=colour, lw=lw, label=label)
        self.plotted.append(line)
        if len(series.t_alone):
            (dots,) = ax.plot(series.t_alone, series.y_alone, "o", color=colour, ms=3)
            self.plotted.append(dots)
        return line

    def _theme(self) -> dict:
        q = theme_colours(self.viewer)
        return {
            "background": q["background"].name(),
            "text": q["text"].name(),
            "grid": q["grid"].name(),
        }

    def _decorate(self, layers, theme) -> None:
        cal = self.calibration()
        self.figure.set_facecolor(theme["background"])
        for ax in (self.ax_x, self.ax_y, self.ax_m):
            ax.set_facecolor(theme["background"])
            ax.tick_params(colors=theme["text"], labelsize="small")
            for spine in ax.spines.values():
                spine.set_color(theme["grid"])
            ax.grid(True, color=theme["grid"], lw=0.5, alpha=0.6)
            ax.yaxis.label.set_color(theme["text"])
            ax.xaxis.label.set_color(theme["text"])
        self.ax_x.set_ylabel(f"x [{cal.length_unit}]")
        self.ax_y.set_ylabel(f"y [{cal.length_unit}]")
        self.ax_m.set_ylabel(self.plot_combo.currentText() or "measure")
        self.ax_m.set_xlabel("time [s]" if cal.fps else "frame")
        legend_style = dict(
            fontsize="x-small",
            facecolor=theme["background"],
            edgecolor=theme["grid"],
            labelcolor=theme["text"],
        )
        for ax in (self.ax_x, self.ax_m):
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        if self._label_order and layers:
            self.ax_x.legend(ncol=3, loc="upper right", **legend_style)  # "best" scans every point
        if any(not line.get_label().startswith("_") for line in self.ax_m.lines):
            self.ax_m.legend(loc="upper right", **legend_style)

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
        self.plotted.append(line)
        self.lines[("review", layer.name, "")] = line

    def _on_frame(self, event=None) -> None:
        self._frame_changed_at = time.monotonic()
        if not self._closed and self.isVisible() and not self._frame_timer.isActive():
            self._frame_timer.start()

    def _place_frame_lines(self) -> None:
        t = self.time_of([current_frame(self.viewer)])[0] if self.viewer.dims.ndim >= 3 else 0.0
        for line in self.frame_lines:
            line.set_xdata([t, t])

    def _on_canvas_drawn(self, event=None) -> None:
        """After a full draw: keep the figure without the frame lines, then draw them on it
        (the full draw's own Qt update shows them)."""
        if self._rendering:  # matplotlib drew it whole (``canvas.draw()``): pieces are older
            self._render_generation += 1
            self._rendering = False
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for line in self.frame_lines:
            line.axes.draw_artist(line)

    def _move_frame_line(self) -> None:
        """Move the current-frame line: restore the background, draw the lines, and let Qt
        repaint the canvas with napari's next repaint (one window flush, not two)."""
        if self._closed or not self.isVisible():
            return
        self._place_frame_lines()
        if self._background is None:
            return  # not drawn yet: the coming full draw puts the lines in place
        self.canvas.restore_region(self._background)
        for line in self.frame_lines:
            line.axes.draw_artist(line)
        self.canvas.update()

    def on_plot_click(self, event) -> None:
        """Move napari to the clicked frame (not while the toolbar zooms or pans)."""
        if event.inaxes is None or event.xdata is None or event.button != 1:
            return
        if str(self.toolbar.mode):  # "" unless zoom or pan is on
            return
        set_frame(self.viewer, self.frame_at(event.xdata))
