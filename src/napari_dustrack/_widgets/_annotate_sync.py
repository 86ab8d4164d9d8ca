"""How the Annotate widget draws the session in its layers, and reads edits back from them.

The ``annotations`` Points layer is written row by row for small changes and with whole-array
writes for big ones (a full redraw of a long cine's points costs far more than a click); the
``annotation tracks`` layer is rebuilt whole, in a worker thread, once edits pause. Edits made
with napari's own Points tools come back through :meth:`AnnotationLayers._on_layer_data`.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from qtpy.QtCore import QObject, QTimer, Signal

from .._napari.geometry import like
from ..errors import DustrackError
from ..io.colours import hex_rgba
from ..io.sources import PointSource
from ..session import Change
from ._annotate_layers import point_style, points_view, tracks_view
from .common import META, label_colormap, notify_error, show_tracks

POINTS_NAME = "annotations"
TRACKS_NAME = "annotation tracks"
ROLE = "annotate"
TAIL_LENGTH = 30
INCREMENTAL_MAX = 64  # changes touching more points are written with whole-array writes
TRACKS_DELAY_MS = 300  # tracks are rebuilt whole (napari has no row updates): once edits pause


class AnnotationLayers(QObject):
    """The Annotate tab's two layers, kept in step with the session of ``context``.

    Parameters
    ----------
    context : AnnotateContext
        The viewer, the session, the cine and the current label.
    parent : QObject, optional

    Attributes
    ----------
    points_layer, tracks_layer : napari layer or None
        The ``annotations`` Points and ``annotation tracks`` Tracks layers (None until drawn).
    tracks_timer : QTimer
        Rebuilds the tracks once edits pause (:data:`TRACKS_DELAY_MS`).
    """

    points_layer_added = Signal(object)  # a new annotations layer: bind keys and mouse on it

    def __init__(self, context, parent=None):
        super().__init__(parent)
        self.context = context
        self.viewer = context.viewer
        self.points_layer = None
        self.tracks_layer = None
        self._updating = False  # we are writing our layers: ignore their events
        self._in_layer_event = False
        self._removing: list[tuple[int, str]] = []
        self._row_keys: list[tuple[int, str]] = []  # (frame, label) of each row of our layer
        self._row_index: dict[tuple[int, str], int] = {}
        self._label_rgba: dict[str, np.ndarray] = {}
        self._tracks_stale = False
        self._tracks_generation = 0
        self.tracks_timer = QTimer(self)
        self.tracks_timer.setSingleShot(True)
        self.tracks_timer.setInterval(TRACKS_DELAY_MS)
        self.tracks_timer.timeout.connect(lambda: self.refresh_tracks(background=True))
        context.label_changed.connect(self.update_feature_defaults)

    @property
    def session(self):
        return self.context.session

    def remove(self) -> None:
        """Take both layers out of the viewer (the cine is no longer annotated)."""
        for layer in (self.points_layer, self.tracks_layer):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.points_layer = self.tracks_layer = None

    def forget(self, layer) -> None:
        """The user deleted ``layer``: the session keeps the points; redrawn on the next change."""
        if layer is self.points_layer:
            self.points_layer = None
        elif layer is self.tracks_layer:
            self.tracks_layer = None

    @contextmanager
    def _keep_frame(self):
        step = self.viewer.dims.current_step
        try:
            yield
        finally:
            if self.viewer.dims.current_step != step:
                self.viewer.dims.current_step = step

    # ================================================================== layers
    def make_points_layer(self) -> None:
        """Add a new, empty ``annotations`` layer over the cine and make it the active one."""
        from . import _layer_types

        cine = self.context.cine_layer
        h, w = cine.data.shape[1:3]
        features = pd.DataFrame(
            {
                "label": pd.Series([], dtype=object),
                "source": pd.Series([], dtype=object),
                "confidence": pd.Series([], dtype=float),
                "reviewed": pd.Series([], dtype=bool),
            }
        )
        layer = _layer_types.Points(
            np.empty((0, 3)),
            ndim=3,
            name=POINTS_NAME,
            features=features,
            **like(cine),
            size=max(4.0, min(h, w) / 40.0),
            border_width=0.15,
            border_width_is_relative=True,
            out_of_slice_display=False,
            metadata={META: {"role": ROLE}},
            # the label feature itself, not a "{label}" format: formatting 80,000 rows in Python
            # on every bulk write stalls the GUI for ~0.3 s
            text={
                "string": {"feature": "label"},
                "size": 8,
                "color": "white",
                "anchor": "upper_left",
            },
        )
        with self._keep_frame():
            self.viewer.add_layer(layer)
        self.points_layer_added.emit(layer)
        layer.events.data.connect(self._on_layer_data)
        self.points_layer = layer
        self.update_feature_defaults()
        self.viewer.layers.selection.active = layer

    def _ensure_points_layer(self) -> bool:
        if self.session is None:
            return False
        if self.points_layer is None or self.points_layer not in self.viewer.layers:
            self.make_points_layer()
        return True

    def refresh(self) -> None:
        """Redraw the annotations layer from the model (all rows)."""
        if not self._ensure_points_layer():
            return
        points, labels, _ = self.session.snapshot()
        view = points_view(points, labels)
        layer = self.points_layer
        with self._writing():
            layer.selected_data = set()
            layer.data = view["data"]
            layer.features = view["features"]
            if len(view["keys"]):
                layer.face_color = view["face"]
                layer.border_color = view["border"]
        self._row_keys = view["keys"]
        self._row_index = {key: i for i, key in enumerate(self._row_keys)}
        self._label_rgba = {lab.name: hex_rgba(lab.colour) for lab in labels}
        self.update_feature_defaults()
        self.context.status_changed.emit()

    def _update_rows(self, change: Change) -> bool:
        """Apply a small change to the layer row by row (a full redraw of a long cine's points
        costs far more than a click); False if a full redraw is needed instead."""
        layer = self.points_layer
        if (
            change.labels is not None
            or layer is None
            or layer not in self.viewer.layers
            or len(layer.data) != len(self._row_keys)
            or any(key[1] not in self._label_rgba for key in change.points)
        ):
            return False
        if len(change.points) > INCREMENTAL_MAX:
            return self._update_rows_bulk(change)
        features = layer.features
        columns = {c: features.columns.get_loc(c) for c in ("source", "confidence", "reviewed")}
        removed = []
        with self._writing():
            for key, p in change.points.items():
                i = self._row_index.get(key)
                if p is None:
                    if i is not None:
                        removed.append(i)
                    continue
                if i is None:  # new row: napari takes its features (and text) from the defaults
                    layer.feature_defaults = {
                        "label": key[1],
                        "source": p.source,
                        "confidence": p.confidence,
                        "reviewed": p.reviewed,
                    }
                    layer.add(np.array([[key[0], p.y, p.x]]))
                    i = len(layer.data) - 1
                    self._row_keys.append(key)
                    self._row_index[key] = i
                else:
                    layer.data[i] = (key[0], p.y, p.x)
                    features.iat[i, columns["source"]] = p.source
                    features.iat[i, columns["confidence"]] = p.confidence
                    features.iat[i, columns["reviewed"]] = p.reviewed
                face, border = point_style(self._label_rgba[key[1]], p.manual, p.reviewed)
                layer.face_color[i] = face
                layer.border_color[i] = border
            if removed:
                layer.remove(removed)
                gone = set(removed)
                self._row_keys = [k for i, k in enumerate(self._row_keys) if i not in gone]
                self._row_index = {key: i for i, key in enumerate(self._row_keys)}
            layer.selected_data = set()
            layer.refresh()
        self.update_feature_defaults()
        self.context.status_changed.emit()
        return True

    def _update_rows_bulk(self, change: Change) -> bool:
        """A big change (a fill, an accepted range) applied with whole-array writes: rows that
        exist are updated in place, new rows added in one call, removed rows in one call."""
        layer = self.points_layer
        keys = list(change.points)
        points = [change.points[k] for k in keys]
        index = np.fromiter((self._row_index.get(k, -1) for k in keys), np.int64, len(keys))
        alive = np.fromiter((p is not None for p in points), bool, len(keys))
        styles: dict = {}

        def style(k, p):
            sig = (k[1], p.manual, p.reviewed)
            if sig not in styles:
                styles[sig] = point_style(self._label_rgba[k[1]], p.manual, p.reviewed)
            return styles[sig]

        def write(rows, picks):
            pts = [points[i] for i in picks]
            layer.data[rows, 1] = [p.y for p in pts]
            layer.data[rows, 2] = [p.x for p in pts]
            feats = layer.features
            feats.iloc[rows, feats.columns.get_loc("label")] = [keys[i][1] for i in picks]
            feats.iloc[rows, feats.columns.get_loc("source")] = [p.source for p in pts]
            feats.iloc[rows, feats.columns.get_loc("confidence")] = [p.confidence for p in pts]
            feats.iloc[rows, feats.columns.get_loc("reviewed")] = [p.reviewed for p in pts]
            looks = [style(keys[i], p) for i, p in zip(picks, pts, strict=False)]
            layer.face_color[rows] = [f for f, _ in looks]
            layer.border_color[rows] = [b for _, b in looks]

        with self._writing():
            update = np.flatnonzero((index >= 0) & alive)
            if len(update):
                write(index[update], update)
            new = np.flatnonzero((index < 0) & alive)
            if len(new):
                start = len(layer.data)
                added = np.array([(keys[i][0], points[i].y, points[i].x) for i in new])
                # not layer.add: it selects the new rows, one set event each (seconds for 80,000)
                layer.data = np.concatenate([layer.data, added])
                write(np.arange(start, start + len(new)), new)
                self._row_keys.extend(keys[i] for i in new)
            gone = index[(index >= 0) & ~alive]
            if len(gone):
                layer.remove(gone.tolist())
                dropped = set(gone.tolist())
                self._row_keys = [k for i, k in enumerate(self._row_keys) if i not in dropped]
            self._row_index = {key: i for i, key in enumerate(self._row_keys)}
            layer.text.refresh(layer.features)
            layer.selected_data = set()
            layer.refresh()
        self.update_feature_defaults()
        self.context.status_changed.emit()
        return True

    def refresh_tracks(self, background: bool = False) -> None:
        """Redraw the tracks layer (one track per label; gaps are left out, never NaN).

        ``background``: compute the rows in a worker thread (a long cine's 80,000 points take
        longer than a GUI handler may), then set them; a newer request drops older results.
        """
        self.tracks_timer.stop()
        if self.session is None:
            return
        layer = self.tracks_layer
        if layer is not None and layer in self.viewer.layers and not layer.visible:
            self._tracks_stale = True  # hidden: rebuilt when shown again
            return
        self._tracks_stale = False
        points, labels, _ = self.session.snapshot()
        self._tracks_generation += 1
        if not background:
            self._apply_tracks(tracks_view(points, labels), labels, self._tracks_generation)
            return
        from napari.qt.threading import create_worker

        worker = create_worker(tracks_view, points, labels)
        worker.returned.connect(
            lambda view, g=self._tracks_generation: self._apply_tracks(view, labels, g)
        )
        worker.start()

    def _apply_tracks(self, view, labels, generation: int) -> None:
        if generation != self._tracks_generation or self.session is None:
            return  # a newer redraw is on its way (or the cine was closed)
        cine = self.context.cine_layer
        if cine is None or cine not in self.viewer.layers:
            return  # the viewer is closing: its layers are going
        from . import _layer_types

        data, features = view
        colormap = label_colormap([lab.colour for lab in labels], "dustrack-labels")
        was = self.tracks_layer

        def new(rows, row_features):
            return _layer_types.Tracks(
                rows,
                features=row_features,
                name=TRACKS_NAME,
                tail_length=TAIL_LENGTH,
                head_length=0,
                tail_width=2,
                **like(cine),
                metadata={META: {"role": ROLE}},
                colormaps_dict={"colour": colormap},
                color_by="colour",
                blending="translucent",
            )

        with self._keep_frame():
            self.tracks_layer = show_tracks(self.viewer, was, data, features, colormap, new)
        if self.tracks_layer is not None and self.tracks_layer is not was:
            self.tracks_layer.events.visible.connect(self._on_tracks_visible)

    def _on_tracks_visible(self, event=None) -> None:
        if self.tracks_layer is not None and self.tracks_layer.visible and self._tracks_stale:
            self.refresh_tracks()

    @contextmanager
    def _writing(self):
        self._updating = True
        try:
            yield
        finally:
            self._updating = False

    def update_feature_defaults(self) -> None:
        """The label (and look) of the next point added with napari's own add tool."""
        layer = self.points_layer
        if layer is None:
            return
        defaults = {
            "label": self.context.current_label or "",
            "source": PointSource.MANUAL.value,
            "confidence": 1.0,
            "reviewed": False,
        }
        current = {k: layer.feature_defaults[k][0] for k in defaults if k in layer.feature_defaults}
        if current != defaults:  # napari's setter is slow on big layers: only when it changes
            with self._writing():
                layer.feature_defaults = defaults

    # ---------------------------------------------------------------- model -> view
    def on_session_change(self, change: Change) -> None:
        """Show ``change`` in the layers: its rows now, the tracks once edits pause."""
        if self._in_layer_event:  # napari is mid-edit of the layer: redraw after it finishes
            QTimer.singleShot(0, self.refresh)
        elif not self._update_rows(change):
            self.refresh()
        self.tracks_timer.start()

    # ---------------------------------------------------------------- view -> model
    def _on_layer_data(self, event) -> None:
        """Edits made with napari's own Points tools (add/select modes, Delete) go to the model."""
        if self._updating or self.session is None:
            return
        layer = self.points_layer
        action = str(getattr(event, "action", ""))
        indices = [int(i) for i in getattr(event, "data_indices", ()) or ()]
        if action == "removing":
            self._removing = [self._key_of_row(i) for i in indices if 0 <= i < len(layer.data)]
            return
        if action not in ("added", "changed", "removed"):
            return
        self._in_layer_event = True
        try:
            if action == "removed":
                self.session.delete_points(self._removing)
                self._removing = []
            else:
                items = []
                for i in indices:
                    frame, label = self._key_of_row(i)
                    if label not in self.session.labels:
                        label = self.context.current_label
                    if label is not None:
                        y, x = layer.data[i, -2:]
                        items.append((frame, label, float(x), float(y)))
                verb = "place" if action == "added" else "move"
                if items:
                    self.session.place_points(items, action=verb)
                else:
                    QTimer.singleShot(0, self.refresh)  # drop a point we could not label
        except DustrackError as exc:
            notify_error(exc)
            QTimer.singleShot(0, self.refresh)
        finally:
            self._in_layer_event = False

    def _key_of_row(self, i: int) -> tuple[int, str]:
        layer = self.points_layer
        return round(float(layer.data[i, 0])), str(layer.features["label"].iloc[i])
