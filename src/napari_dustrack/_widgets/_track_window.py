"""Windowed Tracks layers: a long table is shown through a window of frames around the current
frame.

napari's Tracks layer uploads every vertex and its shader hides those outside the tail and head,
so a paint costs time in proportion to all rows (an 80,000-row layer: ~0.3 s under software
OpenGL; 16,000 rows still ~12 ms of the GUI thread per paint, against ~2.5 ms for a window).
A layer whose table is longer than :data:`THRESHOLD` rows holds only the rows within
``tail + head + 2 * MARGIN`` frames of the current frame; the whole table stays in
``metadata[FULL_TRACKS]`` (:func:`napari_dustrack.io.layers.full_tracks` reads it for saving and
measuring). The window moves only when the current frame comes near its edge, at most
:data:`MOVES_PER_S` times a second, and never while the layer is hidden.
"""

from __future__ import annotations

import time
import weakref
from contextlib import ExitStack

import numpy as np
import pandas as pd
from qtpy.QtCore import QTimer

from ..io.layers import FULL_TRACKS

THRESHOLD = 3_000  # rows: a shorter table is shown whole (a window holds ~1,700 rows of 8 labels)
MARGIN = 100  # frames kept beyond the tail and the head
GUARD = 40  # the window moves when the rows the shader shows come this near its edge
MOVES_PER_S = 4

_windows: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def set_tracks(layer, data, features, colormap) -> None:
    """Replace a Tracks layer's rows, coloured by the ``colour`` feature through ``colormap``.

    napari drops the features when the data change (and warns that ``color_by`` is gone), so
    colour by track id for that moment."""
    layer.color_by = "track_id"
    layer.data = data
    layer.features = features
    layer.colormaps_dict = {"colour": colormap}
    layer.color_by = "colour"


def show_rows(viewer, layer, data, features, colormap) -> None:
    """Give the Tracks ``layer`` the table ``(data, features)``: all rows of a short table, else
    the window around the current frame (the whole table is kept in its metadata)."""
    data = np.asarray(data, dtype=float).reshape(-1, 4)
    features = pd.DataFrame(features).reset_index(drop=True)
    window = _windows.get(layer)
    if len(data) <= THRESHOLD:
        layer.metadata.pop(FULL_TRACKS, None)
        if window is not None:
            window.close()
        set_tracks(layer, data, features, colormap)
        return
    layer.metadata[FULL_TRACKS] = (data, features)
    if window is None:
        window = _windows[layer] = TrackWindow(viewer, layer)
    window.colormap = colormap
    window.move(force=True)


def seed_rows(data, features) -> tuple[np.ndarray, pd.DataFrame]:
    """The rows to build a new Tracks layer with: all of a short table; of a long one, the first
    and the last frame's rows (cheap to build; :func:`show_rows` then gives it its window)."""
    data = np.asarray(data, dtype=float).reshape(-1, 4)
    features = pd.DataFrame(features).reset_index(drop=True)
    if len(data) <= THRESHOLD:
        return data, features
    rows = window_rows(data[:, 1], np.inf, -np.inf)
    return data[rows], features.iloc[rows].reset_index(drop=True)


def window_of(layer) -> TrackWindow | None:
    """The window controller of a Tracks layer, or None when it shows all its rows."""
    return _windows.get(layer)


def window_rows(frames: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Indices of the rows with ``lo <= frame <= hi``, plus the first and the last frame's rows
    (they keep the layer's extent, hence the frame slider's range, that of the whole table;
    the shader hides them away from the current frame)."""
    keep = (frames >= lo) & (frames <= hi)
    if len(frames):
        keep[np.argmin(frames)] = keep[np.argmax(frames)] = True
    return np.flatnonzero(keep)


class TrackWindow:
    """Moves a long Tracks layer's window of rows with the viewer's current frame."""

    def __init__(self, viewer, layer):
        self._viewer = weakref.ref(viewer)
        self._layer = weakref.ref(layer)
        self.colormap = None
        self.shown: tuple[float, float] | None = None  # frames of the rows the layer holds
        self.moves = 0
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.move)
        viewer.dims.events.current_step.connect(self._on_step)
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        viewer.layers.events.removed.connect(self._on_removed)
        for name in ("visible", "tail_length", "head_length"):
            getattr(layer.events, name).connect(self._on_step)

    def close(self) -> None:
        """Stop following the frame (the layer left the viewer, or its table got short)."""
        self._timer.stop()
        viewer, layer = self._viewer(), self._layer()
        if viewer is not None:
            viewer.dims.events.current_step.disconnect(self._on_step)
            viewer.dims.events.ndisplay.disconnect(self._on_ndisplay)
            viewer.layers.events.removed.disconnect(self._on_removed)
        if layer is not None:
            for name in ("visible", "tail_length", "head_length"):
                getattr(layer.events, name).disconnect(self._on_step)
            _windows.pop(layer, None)

    def _on_removed(self, event) -> None:
        if event.value is self._layer():
            self.close()

    def _on_ndisplay(self, event=None) -> None:
        self.shown = None  # 3D showed every frame; back in 2D the window narrows again
        self._on_step()

    def _frame_span(self, margin: int) -> tuple[float, float]:
        """Frames (data coordinates) of the rows the shader may show now, widened by ``margin``;
        every frame when the frame axis is displayed (3D)."""
        viewer, layer = self._viewer(), self._layer()
        axis = viewer.dims.ndim - layer.ndim  # the layer's frame axis in the viewer
        if axis < 0 or axis in viewer.dims.displayed:
            return -np.inf, np.inf
        frame = float(layer.world_to_data(viewer.dims.point)[0])
        return frame - layer.tail_length - margin, frame + layer.head_length + margin

    def _needs_move(self) -> bool:
        if self.shown is None:
            return True
        lo, hi = self._frame_span(GUARD)
        return lo < self.shown[0] or hi > self.shown[1]

    def _on_step(self, event=None) -> None:
        layer = self._layer()
        if layer is None or not layer.visible or self._timer.isActive() or not self._needs_move():
            return
        wait = max(0.0, 1.0 / MOVES_PER_S - (time.monotonic() - self._last))
        self._timer.start(int(wait * 1000))  # coalesced: a drag of the slider moves it at most
        # MOVES_PER_S times a second

    def move(self, force: bool = False) -> None:
        """Give the layer the rows of the window around the current frame (visible layers only;
        ``force``: the table changed, so also when the current window still fits)."""
        viewer, layer = self._viewer(), self._layer()
        if viewer is None or layer is None or FULL_TRACKS not in layer.metadata:
            return
        if not layer.visible:
            if force:
                self.shown = None  # moved when shown again
            return
        if not force and not self._needs_move():
            return
        data, features = layer.metadata[FULL_TRACKS]
        lo, hi = self._frame_span(MARGIN)
        rows = window_rows(data[:, 1], lo, hi)
        with ExitStack() as quiet:
            if not force:
                # the table is the same, only its window moved: nobody is told that the data
                # changed (the Measure tab would recompute every measure; the viewer's ranges
                # stay: the window keeps the first and the last frame's rows)
                for name in ("data", "features", "properties"):  # those this napari has
                    if hasattr(layer.events, name):
                        quiet.enter_context(getattr(layer.events, name).blocker())
            window = features.iloc[rows].reset_index(drop=True)
            set_tracks(layer, data[rows], window, self.colormap)
        self.shown = (lo, hi)
        self._last = time.monotonic()
        self.moves += 1
