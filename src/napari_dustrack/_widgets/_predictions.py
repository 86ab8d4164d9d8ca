"""The layers of a prediction (model or smoothed points): filled in place, in small pieces.

A long cine's predictions are 10,000 frames x 8 labels: building a Points layer of 80,000 rows
costs ~0.4 s and a Tracks layer ~0.6 s, far past what the event loop may wait. So the Points
layer is built once in a worker thread with a row for every (frame, label), all hidden
(``shown`` False), and added (the layer itself hidden for one event-loop turn, so that napari's
insertion and the first draw's shader compile do not stall one turn together; a layer of this
name from an earlier prediction of other labels or frames is refilled instead, see
:meth:`PredictionLayers._refill`); predicted batches then write their rows in place (positions,
confidence, ``shown``) a few thousand rows per timer tick, and redraw the layer only when the
piece holds the frame on screen (napari slices the new rows when the frame changes). The Tracks
layer is computed in a worker thread once the last piece is in. Rows never predicted stay
hidden: :func:`visible_table` leaves them out.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd
from napari.layers import Points, Tracks
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, QTimer, Signal

from .._napari.geometry import like
from ..io.colours import rgba_rows, track_colour_values
from ..io.layers import points_to_table
from . import _layer_types
from ._track_window import seed_rows
from .common import (
    META,
    add_under_annotations,
    current_frame,
    label_colormap,
    label_colours,
    page,
    show_tracks,
)

ROLE = "prediction"
CHUNK_ROWS = 1600  # rows written per timer tick (a few ms on 80,000 rows)
TICK_MS = 30  # leaves the event loop time to paint and take input between pieces
TAIL_LENGTH = 10
# what a prediction layer of other labels or frames takes from a new one (see _refill): the
# rest is the same for every layer of a PredictionLayers
REFILLED = ("data", "features", "face_color", "border_color", "size", "shown", "metadata")


def visible_table(layer) -> pd.DataFrame:
    """The point table of a Points layer without its hidden rows (not predicted yet)."""
    return points_to_table(*shown_copy(layer))


def _prepared_points(name, source, labels, n_frames, colours, geometry, size, filled):
    """A Points layer with one hidden row per (frame, label), row ``frame * L + j`` (thread)."""
    n_labels = len(labels)
    frames = np.repeat(np.arange(n_frames, dtype=float), n_labels)
    row_labels = np.tile(np.asarray(labels, dtype=object), n_frames)
    features = pd.DataFrame(
        {
            "label": pd.Series(row_labels, dtype=object),
            "source": pd.Series(np.full(len(frames), source, dtype=object), dtype=object),
            "confidence": np.zeros(len(frames)),
            "reviewed": np.zeros(len(frames), dtype=bool),
        }
    )
    rgba = rgba_rows(row_labels, colours)
    face = rgba if filled else np.c_[rgba[:, :3], np.full(len(frames), 0.25)]
    return _layer_types.Points(
        np.c_[frames, np.zeros((len(frames), 2))],
        ndim=3,
        name=name,
        features=features,
        shown=np.zeros(len(frames), dtype=bool),
        face_color=face,
        border_color=rgba,
        border_width=0.2,
        border_width_is_relative=True,
        size=size,
        **geometry,
        out_of_slice_display=False,
        text={"string": {"feature": "label"}, "size": 7, "color": "white", "anchor": "lower_right"},
        metadata={META: {"role": ROLE, "source": source, "labels": list(labels)}},
    )


def _tracks_arrays(table: pd.DataFrame, labels) -> tuple[np.ndarray, dict]:
    ids = {lab: i + 1 for i, lab in enumerate(labels)}
    sub = table[table["label"].isin(ids)]
    track = sub["label"].map(ids).to_numpy(dtype=float)
    data = np.c_[track, sub[["frame", "y", "x"]].to_numpy(dtype=float)].reshape(-1, 4)
    order = np.lexsort((data[:, 1], data[:, 0]))  # napari's own order: no re-sort there
    data = data[order]
    return data, {
        "label": sub["label"].to_numpy(dtype=object)[order],
        "confidence": sub["confidence"].to_numpy(dtype=float)[order],
        "colour": track_colour_values(data[:, 0], len(labels)),
    }


class PredictionLayers(QObject):
    """A ``<name>`` Points layer and a ``<tracks_name>`` Tracks layer filled piece by piece.

    Parameters
    ----------
    viewer : napari.Viewer
    name, tracks_name : str
        Layer names.
    source : str
        ``model`` or ``smoothed`` (the rows' ``source``).
    filled : bool
        Solid dots (smoothed) or rings with a faint fill (model).
    """

    finished = Signal()

    def __init__(self, viewer, name: str, tracks_name: str, source: str, filled: bool = False):
        super().__init__()
        self.viewer = viewer
        self.name, self.tracks_name, self.source, self.filled = name, tracks_name, source, filled
        self.labels: list[str] = []
        self.n_frames = 0
        self.layer = None
        self._queue: deque = deque()
        self._finishing = False
        self._building = None
        self._generation = 0  # begin() calls
        self._refilling = None  # the layer _refill is giving new rows, until it is done
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self.pieces = 0  # timer ticks that wrote rows (for tests and benchmarks)
        self.redraws = 0  # of those, the ones that redrew the layer (the piece was on screen)

    @property
    def busy(self) -> bool:
        return bool(self._queue) or self._building is not None or self._finishing

    def begin(self, labels, n_frames: int, cine) -> None:
        """Prepare the layers for ``labels`` x ``n_frames`` (reuses a matching Points layer)."""
        self.labels, self.n_frames = list(labels), int(n_frames)
        self._queue.clear()
        self._finishing = False
        self._generation += 1  # a layer or tracks built for an earlier call are dropped
        self._building = None
        self._timer.stop()  # no layer to write to until the new one is ready
        if self._refilling is None:  # a layer being refilled is shown when its rows are in
            self.set_shown(True)  # hidden when a smoothed result superseded them
        existing = self.viewer.layers[self.name] if self.name in self.viewer.layers else None
        if (
            isinstance(existing, Points)
            and existing is not self._refilling  # half refilled: refilled again
            and len(existing.data) == self.n_frames * len(self.labels)
            and existing.metadata.get(META, {}).get("labels") == self.labels
        ):
            self.layer = existing
            return
        self.layer = None
        colours = label_colours(self.viewer, self.labels)
        geometry = like(cine) if cine is not None else {}  # seconds, mm, axis labels
        h, w = cine.data.shape[1:3] if cine is not None else (64, 64)
        size = max(3.0, min(h, w) / 50.0)
        worker = create_worker(
            _prepared_points,
            self.name,
            self.source,
            self.labels,
            self.n_frames,
            colours,
            geometry,
            size,
            self.filled,
        )
        worker.returned.connect(
            lambda layer, old=existing, gen=self._generation: self._add(layer, old, gen)
        )
        self._building = worker
        worker.start()

    def set_shown(self, shown: bool) -> None:
        """Show or hide this prediction's Points and Tracks layers (those present)."""
        for name in (self.name, self.tracks_name):
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
            if layer is not None and layer.visible != shown:  # napari refreshes a shown layer
                layer.visible = shown

    def _add(self, layer, old, generation: int) -> None:
        if generation != self._generation:
            return  # a later begin() superseded this layer
        if _is_prediction(old) and old in self.viewer.layers:
            self._refill(old, layer, generation)
            return
        self._building = None
        if old is not None and old in self.viewer.layers:
            self.viewer.layers.remove(old)  # not the plugin's layer: it makes way
        add_under_annotations(self.viewer, layer, staged=True)
        self._ready(layer)

    def _ready(self, layer) -> None:
        self._building = None
        _install_review(self.viewer, layer)
        self.layer = layer
        self._kick()

    def _refill(self, old, new, generation: int) -> None:
        """Give ``old`` (this prediction's layer, of other labels or frames) the rows of ``new``,
        hidden, one property per event-loop turn, then show it.

        Removing a layer costs napari a full garbage collection (``gc.collect()`` after closing
        its visual: 0.3-0.6 s in one turn here), and inserting a new one its visual, controls
        and shaders; setting the properties of a hidden layer costs 10-70 ms each."""
        steps = deque(like(new).items())  # scale, units...: the cine may be another one
        steps += [(key, getattr(new, key)) for key in REFILLED]
        old.visible = False
        self._refilling = old

        def step():
            if generation != self._generation or old not in self.viewer.layers:
                return  # superseded by a later begin(), or the layer was closed
            key, value = steps.popleft()
            setattr(old, key, value)
            if steps:
                QTimer.singleShot(0, step)
                return
            self._refilling = None
            old.visible = True
            self._ready(old)

        QTimer.singleShot(0, step)

    def put(self, frames, xy, confidence=None) -> None:
        """Queue predicted positions: ``frames`` (n,), ``xy`` (n, L, 2), ``confidence`` (n, L)."""
        frames = np.asarray(frames, dtype=np.int64)
        xy = np.asarray(xy, dtype=float)
        conf = np.ones(xy.shape[:2]) if confidence is None else np.asarray(confidence, dtype=float)
        step = max(1, CHUNK_ROWS // max(len(self.labels), 1))
        for i in range(0, len(frames), step):
            self._queue.append((frames[i : i + step], xy[i : i + step], conf[i : i + step]))
        self._kick()

    def finish(self) -> None:
        """Build the tracks once every queued piece is in; emits :attr:`finished` after."""
        self._finishing = True
        self._kick()

    def _kick(self) -> None:
        if self.layer is not None and not self._timer.isActive():
            self._timer.start()

    def _tick(self) -> None:
        if not self._queue:
            self._timer.stop()
            if self._finishing:
                self._finishing = False
                self.layer.refresh()
                self._build_tracks()
            return
        frames, xy, conf = self._queue.popleft()
        n_labels = len(self.labels)
        rows = (frames[:, None] * n_labels + np.arange(n_labels)).ravel()
        xy, conf = xy.reshape(-1, 2), np.clip(np.nan_to_num(conf.ravel(), nan=0.0), 0.0, 1.0)
        ok = np.isfinite(xy).all(axis=1) & (rows < len(self.layer.data))
        rows, xy, conf = rows[ok], xy[ok], conf[ok]
        layer = self.layer
        layer.data[rows, 1] = xy[:, 1]
        layer.data[rows, 2] = xy[:, 0]
        layer.features.iloc[rows, layer.features.columns.get_loc("confidence")] = conf
        layer.shown[rows] = True
        # napari slices from ``data`` and ``shown`` whenever the frame changes: a piece off the
        # displayed frame needs no redraw now (a refresh + repaint of an 80,000-row layer is
        # most of a tick); the extent and thumbnail are refreshed once, after the last piece
        if self._on_screen(frames):
            layer.refresh(thumbnail=False, extent=False)
            self.redraws += 1
        self.pieces += 1

    def _on_screen(self, frames) -> bool:
        if self.viewer.dims.ndisplay == 3:
            return True  # every frame is drawn
        return bool(np.any(np.asarray(frames) == current_frame(self.viewer)))

    def _build_tracks(self) -> None:
        copy = shown_copy(self.layer)  # tabulated in the worker (80,000 rows: ~0.2 s)
        existing = (
            self.viewer.layers[self.tracks_name] if self.tracks_name in self.viewer.layers else None
        )
        colours = label_colours(self.viewer, self.labels)
        colormap = label_colormap([colours[lab] for lab in self.labels], f"{self.name}-labels")
        # a new Tracks layer of 80,000 rows takes ~0.5 s to build: built in the worker too
        build = (
            None
            if isinstance(existing, Tracks)
            else dict(
                name=self.tracks_name,
                **like(self.layer),
                tail_length=TAIL_LENGTH,
                head_length=0,
                colormaps_dict={"colour": colormap},
                color_by="colour",
                blending="translucent",
                metadata={META: {"role": ROLE, "source": self.source}},
            )
        )
        worker = create_worker(_tracks_result, copy, self.labels, build)
        worker.returned.connect(
            lambda result, gen=self._generation: self._show_tracks(result, colormap, gen)
        )
        self._building = worker
        worker.start()

    def _show_tracks(self, result, colormap, generation: int) -> None:
        if generation != self._generation:
            return  # tracks of an earlier prediction: a later begin() owns the layers now
        self._building = None
        if self.layer is None or self.layer not in self.viewer.layers:
            return  # the layer (or the viewer) was closed meanwhile
        data, features, new_layer = result
        layer = (
            self.viewer.layers[self.tracks_name] if self.tracks_name in self.viewer.layers else None
        )
        show_tracks(self.viewer, layer, data, features, colormap, new_layer, staged=True)
        measure = page(self.viewer, "measure")
        if measure is not None:
            measure.schedule_refresh()
        self.finished.emit()


def shown_copy(layer) -> tuple[np.ndarray, pd.DataFrame]:
    """``(data, features)`` of a Points layer's shown rows, copied (the user may edit the layer
    while a worker thread reads the copy)."""
    shown = np.flatnonzero(np.asarray(layer.shown, dtype=bool))
    return np.asarray(layer.data)[shown], layer.features.iloc[shown].reset_index(drop=True)


def _tracks_result(copy, labels, build: dict | None):
    """(data, features, a new Tracks layer or None) -- runs in a worker thread."""
    data, features = _tracks_arrays(points_to_table(*copy), labels)
    # a long table's layer is built with a few rows: show_tracks gives it its window of frames
    if build is None or not len(data):
        return data, features, None
    rows, row_features = seed_rows(data, features)
    return data, features, _layer_types.Tracks(rows, features=row_features, **build)


def _is_prediction(layer) -> bool:
    return isinstance(layer, Points) and layer.metadata.get(META, {}).get("role") == ROLE


def _install_review(viewer, layer) -> None:
    """Dragging a predicted point (or a key) acts on the annotations: see the Annotate tab."""
    annotate = page(viewer, "annotate")
    if annotate is not None:
        annotate.install_on_prediction(layer)
