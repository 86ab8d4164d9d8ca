"""The "Annotate" tab: labels, keyframes, optical flow, review, autosave.

The widget translates between napari layers and :class:`~napari_dustrack.session.
AnnotationSession` (the model, which also autosaves to the video's sidecar) and runs
:mod:`napari_dustrack.tracking.flow` in a worker thread. It owns two layers beside the cine:

- ``annotations`` (Points): rows ``(frame, y, x)``, features ``label, source, confidence,
  reviewed``; manual points solid, optical-flow points hollow until reviewed, then half-filled.
- ``annotation tracks`` (Tracks): one track per label, with tails.

Keys live in :mod:`._annotate_keys`, mouse handling in :mod:`._annotate_mouse`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QColorDialog,
    QDialog,
    QFileDialog,
    QInputDialog,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from .._napari.geometry import like
from ..session import AnnotationSession, Change, lost_frames, open_session
from ..errors import Cancelled, DustrackError
from ..io.layers import points_to_table
from ..tracking.lk import LKParams
from . import _annotate_keys, _annotate_mouse
from ._annotate_panels import ActionsRow, FlowPanel, FramesPanel, KeysDialog, LabelsPanel, ReviewPanel
from ..io.colours import hex_rgba
from ._annotate_layers import point_style, points_view, tracks_view
from ._annotate_step import StepCarrier
from .common import (
    is_cine,
    label_colormap,
    META,
    notify,
    register_page,
    role_of,
    show_tracks,
    cine_info,
    current_frame,
    find_cine_layer,
    notify_error,
    open_frames,
    set_frame,
    TaskBar,
)

log = logging.getLogger(__name__)

POINTS_NAME = "annotations"
TRACKS_NAME = "annotation tracks"
ROLE = "annotate"
TAIL_LENGTH = 30
INCREMENTAL_MAX = 64
ACCEPT_INLINE_ROWS = 20_000  # more predictions than this are compared in a worker thread  # changes touching more points redraw the whole layer
TRACKS_DELAY_MS = 300  # tracks are rebuilt whole (napari has no row updates): once edits pause
IMPORT_FILTER = "Point files (*.json *.csv *.h5);;DUSTrack JSON (*.json);;DeepLabCut (*.csv *.h5)"


class AnnotateWidget(QWidget):
    """Keyframe annotation, optical-flow propagation and review for the cine in the viewer."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session: AnnotationSession | None = None
        self.cine_layer = None
        self.points_layer = None
        self.tracks_layer = None
        self.current_label: str | None = None
        self.step_adjust = False
        self._frame = current_frame(napari_viewer) if napari_viewer.dims.ndim else 0
        self._updating = False  # we are writing our layers: ignore their events
        self._in_layer_event = False
        self._removing: list[tuple[int, str]] = []
        self._carrier: StepCarrier | None = None
        self._keys_dialog = None
        self._holder = {"session": None}
        self._row_keys: list[tuple[int, str]] = []  # (frame, label) of each row of our layer
        self._row_index: dict[tuple[int, str], int] = {}
        self._label_rgba: dict[str, np.ndarray] = {}
        self._tracks_stale = False
        self._tracks_timer = QTimer(self)
        self._tracks_timer.setSingleShot(True)
        self._tracks_timer.setInterval(TRACKS_DELAY_MS)
        self._tracks_timer.timeout.connect(lambda: self.refresh_tracks(background=True))
        self._tracks_generation = 0
        self._lost: list[int] = []  # frames where the last flow run lost a point or was unsure
        self._flow_note = ""  # what the last fill said about unreliable points (status line)
        self._review_pos = -1
        self._accepting = None  # a worker comparing many predictions with the annotations
        self._build_ui()
        register_page(napari_viewer, "annotate", self)
        self.destroyed.connect(lambda *_, h=self._holder: _close_holder(h))
        napari_viewer.layers.events.inserted.connect(self._on_layer_inserted)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        napari_viewer.dims.events.current_step.connect(self._on_frame_changed)
        cine = find_cine_layer(napari_viewer)
        if cine is not None and is_cine(cine):
            self.bind(cine)
        self._update_controls()

    # ================================================================== UI
    def _build_ui(self) -> None:
        """The panels, their signals wired to the session and the layers, and the status."""
        layout = QVBoxLayout(self)
        self.video_label = QLabel("Open a cine (File > Open) to annotate it.")
        self.video_label.setWordWrap(True)
        layout.addWidget(self.video_label)
        self.labels_panel = labels = LabelsPanel()
        labels.picked.connect(self._on_label_row)
        labels.edited.connect(self._on_label_edited)
        labels.add_requested.connect(self.add_label_dialog)
        labels.remove_requested.connect(lambda: self.remove_label())
        labels.colour_requested.connect(self.colour_dialog)
        labels.move_requested.connect(self.move_label)
        self.frames_panel = frames = FramesPanel()
        frames.go_to.connect(self.go_to)
        frames.previous_keyframe.connect(self.previous_keyframe)
        frames.next_keyframe.connect(self.next_keyframe)
        frames.next_missing.connect(self.next_missing)
        frames.copy_previous.connect(self.copy_previous)
        frames.step_check.toggled.connect(self.set_step_adjust)
        self.flow_panel = flow = FlowPanel()
        flow.track.connect(lambda direction: self.track(direction))
        flow.fill.connect(self.fill_between)
        self.review_panel = review = ReviewPanel()
        review.segment_requested.connect(self.set_range_to_segment)
        review.accept_requested.connect(lambda: self.accept_range())
        self.actions_row = actions = ActionsRow()
        actions.undo.connect(self.undo)
        actions.redo.connect(self.redo)
        actions.import_requested.connect(self.import_dialog)
        actions.keys_requested.connect(self.show_keys)
        for panel in (labels, frames, flow, review, actions):
            layout.addWidget(panel)
        self.taskbar = TaskBar(self)
        layout.addWidget(self.taskbar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        # the controls tests, keys and the screenshots reach by name
        self.label_list = labels.label_list
        self.jump_spin, self.step_check = frames.jump_spin, frames.step_check
        self.n_spin, self.scope_check, self.fill_method = flow.n_spin, flow.scope_check, flow.fill_method
        self.win_spin, self.level_spin = flow.win_spin, flow.level_spin
        self.iter_spin, self.eps_spin = flow.iter_spin, flow.eps_spin
        self.from_spin, self.to_spin = review.from_spin, review.to_spin
        self.undo_button, self.redo_button = actions.undo_button, actions.redo_button

    # ================================================================== binding
    def bind(self, cine_layer) -> None:
        """Annotate ``cine_layer``: restore its sidecar, create our layers, bind keys/mouse."""
        if cine_layer is self.cine_layer:
            return
        self.unbind()
        info = cine_info(cine_layer)
        n_frames = int(info.get("n_frames") or cine_layer.data.shape[0])
        path = info.get("path")
        session = None
        if path:
            try:
                session = open_session(path, n_frames)
            except DustrackError as exc:
                notify_error(exc)
                show_warning("Annotations of this video will NOT be saved.")
        if session is None:
            session = AnnotationSession(n_frames)
        self.session = self._holder["session"] = session
        self.cine_layer = cine_layer
        session.on_change.append(self._on_session_change)
        self._carrier = StepCarrier(session, lambda layer=cine_layer: open_frames(layer), notify_error)
        labels = session.labels
        self.current_label = labels[0] if labels else None
        for spin in (self.jump_spin, self.from_spin, self.to_spin):
            spin.setRange(0, max(n_frames - 1, 0))
        self.to_spin.setValue(max(n_frames - 1, 0))
        self._make_points_layer()
        self._refresh_label_list()
        self.refresh()
        self.refresh_tracks()
        # adding layers puts napari's frame slider mid-way; a freshly opened cine starts at 0
        set_frame(self.viewer, 0)
        self._frame = 0
        name = Path(path).name if path else cine_layer.name
        if path and session.autosaver is not None:
            restored = f"; restored {len(session)} points" if len(session) or labels else ""
            self.video_label.setText(f"{name}: autosaved to {Path(path).name}.dustrack/{restored}")
        else:
            self.video_label.setText(f"{name}: not autosaved (no file behind this layer)")
        self._update_controls()

    def unbind(self) -> None:
        """Save and stop annotating the current cine; our layers are removed."""
        session = self.session
        if session is None:
            return
        if self._on_session_change in session.on_change:
            session.on_change.remove(self._on_session_change)
        try:
            session.close()
        except DustrackError as exc:
            notify_error(exc)
        self.session = self._holder["session"] = None
        self.cine_layer = None
        for layer in (self.points_layer, self.tracks_layer):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.points_layer = self.tracks_layer = None
        if self._carrier is not None:
            self._carrier.close()
            self._carrier = None
        self.label_list.clear()
        self.video_label.setText("Open a cine (File > Open) to annotate it.")

    def closeEvent(self, event) -> None:
        self.unbind()
        super().closeEvent(event)

    def _on_layer_inserted(self, event) -> None:
        layer = event.value
        if is_cine(layer) and layer is not self.cine_layer:
            # bind after napari has finished inserting (we add layers ourselves)
            QTimer.singleShot(0, lambda: self.bind(layer) if layer in self.viewer.layers else None)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if layer is self.cine_layer:
            QTimer.singleShot(0, self.unbind)
        elif layer is self.points_layer:
            self.points_layer = None  # the session keeps the points; recreated on next change
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
    def _make_points_layer(self) -> None:
        from napari.layers import Points

        cine = self.cine_layer
        h, w = cine.data.shape[1:3]
        features = pd.DataFrame({
            "label": pd.Series([], dtype=object), "source": pd.Series([], dtype=object),
            "confidence": pd.Series([], dtype=float), "reviewed": pd.Series([], dtype=bool)})
        layer = Points(
            np.empty((0, 3)), ndim=3, name=POINTS_NAME, features=features,
            **like(cine),
            size=max(4.0, min(h, w) / 40.0), border_width=0.15, border_width_is_relative=True,
            out_of_slice_display=False, metadata={META: {"role": ROLE}},
            text={"string": "{label}", "size": 8, "color": "white", "anchor": "upper_left"},
        )
        with self._keep_frame():
            self.viewer.add_layer(layer)
        _annotate_keys.install(layer, self)
        _annotate_mouse.install(layer, self)
        layer.events.data.connect(self._on_layer_data)
        self.points_layer = layer
        self._update_feature_defaults()
        self.viewer.layers.selection.active = layer

    def _ensure_points_layer(self) -> bool:
        if self.session is None:
            return False
        if self.points_layer is None or self.points_layer not in self.viewer.layers:
            self._make_points_layer()
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
        self._update_feature_defaults()
        self._update_controls()

    def _update_rows(self, change: Change) -> bool:
        """Apply a small change to the layer row by row (a full redraw of a long cine's points
        costs far more than a click); False if a full redraw is needed instead."""
        layer = self.points_layer
        if (change.labels is not None or layer is None
                or layer not in self.viewer.layers or len(layer.data) != len(self._row_keys)
                or any(key[1] not in self._label_rgba for key in change.points)):
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
                    layer.feature_defaults = {"label": key[1], "source": p.source,
                                              "confidence": p.confidence, "reviewed": p.reviewed}
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
        self._update_feature_defaults()
        self._update_controls()
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
            looks = [style(keys[i], p) for i, p in zip(picks, pts)]
            layer.face_color[rows] = [f for f, _ in looks]
            layer.border_color[rows] = [b for _, b in looks]

        with self._writing():
            update = np.flatnonzero((index >= 0) & alive)
            if len(update):
                write(index[update], update)
            new = np.flatnonzero((index < 0) & alive)
            if len(new):
                start = len(layer.data)
                layer.add(np.array([(keys[i][0], points[i].y, points[i].x) for i in new]))
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
        self._update_feature_defaults()
        self._update_controls()
        return True

    def refresh_tracks(self, background: bool = False) -> None:
        """Redraw the tracks layer (one track per label; gaps are left out, never NaN).

        ``background``: compute the rows in a worker thread (a long cine's 80,000 points take
        longer than a GUI handler may), then set them; a newer request drops older results.
        """
        self._tracks_timer.stop()
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
        worker.returned.connect(lambda view, g=self._tracks_generation: self._apply_tracks(view, labels, g))
        worker.start()

    def _apply_tracks(self, view, labels, generation: int) -> None:
        if generation != self._tracks_generation or self.session is None:
            return  # a newer redraw is on its way (or the cine was closed)
        from napari.layers import Tracks

        data, features = view
        colormap = label_colormap([lab.colour for lab in labels], "dustrack-labels")
        was = self.tracks_layer

        def new():
            return Tracks(data, features=features, name=TRACKS_NAME, tail_length=TAIL_LENGTH,
                          head_length=0, tail_width=2, **like(self.cine_layer),
                          metadata={META: {"role": ROLE}}, colormaps_dict={"colour": colormap},
                          color_by="colour", blending="translucent")

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

    def _update_feature_defaults(self) -> None:
        """The label (and look) of the next point added with napari's own add tool."""
        layer = self.points_layer
        if layer is None:
            return
        defaults = {"label": self.current_label or "", "source": "manual", "confidence": 1.0,
                    "reviewed": False}
        current = {k: layer.feature_defaults[k][0] for k in defaults if k in layer.feature_defaults}
        if current != defaults:  # napari's setter is slow on big layers: only when it changes
            with self._writing():
                layer.feature_defaults = defaults

    # ---------------------------------------------------------------- model -> view
    def _on_session_change(self, change: Change) -> None:
        if change.labels is not None:
            self._refresh_label_list()
        if self._in_layer_event:  # napari is mid-edit of the layer: redraw after it finishes
            QTimer.singleShot(0, self.refresh)
        elif not self._update_rows(change):
            self.refresh()
        self._tracks_timer.start()

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
                        label = self.current_label
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

    # ================================================================== labels
    def _refresh_label_list(self) -> None:
        session = self.session
        names = session.labels if session is not None else []
        if self.current_label not in names:
            self.current_label = names[0] if names else None
        self.labels_panel.show_labels(session.label_items if session is not None else [],
                                      self.current_label)
        self._update_feature_defaults()

    def _on_label_row(self, row: int) -> None:
        if self.session is not None and 0 <= row < len(self.session.labels):
            self.current_label = self.session.labels[row]
            self._update_feature_defaults()
            self._update_controls()

    def _on_label_edited(self, row: int, text: str) -> None:
        if self.session is None or not 0 <= row < len(self.session.labels):
            return
        old = self.session.labels[row]
        if text.strip() != old:
            self.rename_label(old, text)

    def add_label(self, name: str, colour: str | None = None) -> str | None:
        """Add a label and make it the current one."""
        if not self._need_session():
            return None
        try:
            name = self.session.add_label(name, colour)
        except DustrackError as exc:
            notify_error(exc)
            return None
        self.pick_label(name)
        return name

    def add_label_dialog(self) -> None:
        if not self._need_session():
            return
        name, ok = QInputDialog.getText(self, "Add label", "Name of the new label:")
        if ok and name.strip():
            self.add_label(name)

    def rename_label(self, old: str, new: str) -> None:
        was_current = self.current_label == old
        try:
            new = self.session.rename_label(old, new)
        except DustrackError as exc:
            notify_error(exc)
            self._refresh_label_list()
            return
        if was_current:
            self.pick_label(new)

    def remove_label(self, name: str | None = None) -> None:
        name = name or self.current_label
        if self.session is None or name is None:
            return
        self.session.remove_label(name)
        show_info(f"Removed label {name!r} and its points (Ctrl+Z to undo).")

    def move_label(self, delta: int) -> None:
        if self.session is None or self.current_label is None:
            return
        index = self.session.labels.index(self.current_label)
        self.session.move_label(self.current_label, max(0, index + int(delta)))

    def colour_dialog(self) -> None:
        if self.session is None or self.current_label is None:
            return
        colour = QColorDialog.getColor(QColor(self.session.colour(self.current_label)), self)
        if colour.isValid():
            self.session.set_colour(self.current_label, colour.name())

    def pick_label(self, name: str) -> None:
        """Make ``name`` the current label (clicks place it)."""
        if self.session is None or name not in self.session.labels:
            return
        self.current_label = name
        self.label_list.setCurrentRow(self.session.labels.index(name))
        self._update_feature_defaults()
        self._update_controls()

    def pick_label_index(self, index: int) -> None:
        if self.session is not None and 0 <= index < len(self.session.labels):
            self.pick_label(self.session.labels[index])

    def cycle_label(self, delta: int) -> None:
        if self.session is None or not self.session.labels:
            return
        labels = self.session.labels
        i = labels.index(self.current_label) if self.current_label in labels else 0
        self.pick_label(labels[(i + int(delta)) % len(labels)])

    # ================================================================== points
    def place(self, frame: int, label: str, x: float, y: float) -> None:
        """Place ``label`` at (x, y) on ``frame`` (moves it if it is already there)."""
        if self.session is None:
            return
        try:
            self.session.set_point(frame, label, x, y)
        except DustrackError as exc:
            notify_error(exc)

    def move(self, frame: int, label: str, x: float, y: float, action: str = "move") -> None:
        """The user dragged a point (``correct``: a predicted one): it is a manual point there."""
        if self.session is None:
            return
        try:
            self.session.set_point(frame, label, x, y, action=action)
        except DustrackError as exc:
            notify_error(exc)
            self.refresh()

    def delete_current_point(self) -> None:
        if self.session is not None and self.current_label is not None:
            self.session.delete_point(self.frame, self.current_label)

    def copy_previous(self) -> None:
        if self.session is None:
            return
        n = self.session.copy_previous(self.frame)
        if n == 0:
            show_info("Nothing to copy from the previous frame.")

    def undo(self) -> None:
        if self.session is not None and self.session.undo() is None:
            show_info("Nothing to undo.")

    def redo(self) -> None:
        if self.session is not None and self.session.redo() is None:
            show_info("Nothing to redo.")

    # ================================================================== frames
    @property
    def frame(self) -> int:
        return current_frame(self.viewer)

    def go_to(self, frame: int) -> None:
        set_frame(self.viewer, int(frame))

    def step(self, delta: int) -> None:
        """Move ``delta`` frames (a single step forward carries points in step-and-adjust mode)."""
        self.go_to(self.frame + int(delta))

    def focus_jump(self) -> None:
        self.jump_spin.setFocus()
        self.jump_spin.selectAll()

    def previous_keyframe(self) -> None:
        self._jump(self.session.previous_keyframe(self.frame) if self.session is not None else None, "keyframe before")

    def next_keyframe(self) -> None:
        self._jump(self.session.next_keyframe(self.frame) if self.session is not None else None, "keyframe after")

    def next_missing(self) -> None:
        self._jump(self.session.next_missing(self.frame) if self.session is not None else None,
                   "frame lacking a label besides")

    def _jump(self, frame: int | None, what: str) -> None:
        if frame is None:
            show_info(f"No {what} frame {self.frame}.")
        else:
            self.go_to(frame)

    def _on_frame_changed(self, event=None) -> None:
        if not self.viewer.dims.ndim:
            return
        new, old = self.frame, self._frame
        self._frame = new
        self.frames_panel.show_frame(new)
        if self.step_adjust and self._carrier is not None and new == old + 1:
            self._carrier.carry(old, new, self.lk_params())
        self._update_controls()

    # ================================================================== step-and-adjust
    def toggle_step_adjust(self) -> None:
        self.step_check.setChecked(not self.step_check.isChecked())

    def set_step_adjust(self, on: bool) -> None:
        self.step_adjust = bool(on)
        if self.step_check.isChecked() != self.step_adjust:
            self.step_check.setChecked(self.step_adjust)
        self._update_controls()

    @property
    def carrying(self) -> bool:
        """Whether a step-and-adjust carry is queued or running."""
        return self._carrier is not None and self._carrier.busy

    @property
    def last_step_ms(self) -> float | None:
        """Wall time of the last carry, from the key press to the stored points (ms)."""
        return None if self._carrier is None else self._carrier.last_ms

    # ================================================================== optical flow
    def lk_params(self) -> LKParams:
        return self.flow_panel.lk_params()

    def toggle_scope(self) -> None:
        self.scope_check.setChecked(not self.scope_check.isChecked())

    def _scope_labels(self) -> list[str]:
        if self.session is None:
            return []
        if self.scope_check.isChecked():
            return [self.current_label] if self.current_label else []
        return self.session.labels

    def track(self, direction: int, n: int | None = None) -> None:
        """Track the points of this frame ``n`` frames forward (direction 1) or backward (-1)."""
        if not self._need_session():
            return
        from ..tracking.flow import propagate

        f0 = self.frame
        labels = [lab for lab in self._scope_labels() if self.session.point(f0, lab) is not None]
        if not labels:
            show_info(f"No points on frame {f0} to track.")
            return
        n = int(n if n is not None else self.n_spin.value())
        last = self.session.n_frames - 1
        steps = min(n, last - f0) if direction > 0 else -min(n, f0)
        if steps == 0:
            show_info("Already at the end of the video.")
            return
        xy0 = self.session.positions(f0, labels)
        rows = f0 + np.sign(steps) * np.arange(abs(steps) + 1)
        action = f"track {'forward' if steps > 0 else 'backward'} {abs(steps)}"

        def apply(session, result):
            xy, conf = result
            session.apply_flow(xy[1:], labels, rows[1:len(xy)], conf[1:], action=action)
            self._report_flow(lost_frames(xy[1:], labels, rows[1:len(xy)]))

        self._run_flow(propagate, (f0, xy0, steps), apply, f"tracking {abs(steps)} frames")

    def fill_between(self) -> None:
        """Fill between consecutive keyframes of every label in scope (LK + RSTC)."""
        if not self._need_session():
            return
        from ..tracking.flow import fill_between

        labels = [lab for lab in self._scope_labels() if len(self.session.keyframes(lab)) >= 2]
        if not labels:
            show_info("Fill needs a label with at least two keyframes (manual points).")
            return
        keys = self.session.keys_array(labels)
        spans = {lab: (min(k), max(k)) for lab in labels for k in [self.session.keyframes(lab)]}
        method = self.fill_method.currentText()
        report: dict = {}  # filled by the worker: the unreliable points (flow_confidence.Flags)

        def apply(session, result):
            xy, conf = result
            # unreliable points keep their confidence: accepted, they stay source "flow",
            # reviewed, and training weighs them by it
            session.apply_flow(xy, labels, None, conf, action="fill between keyframes")
            self._report_flow(lost_frames(xy, labels, spans=spans), report.get("flags"))

        self._run_flow(fill_between, (keys,), apply, f"filling {len(labels)} label(s) ({method})",
                       labels=labels, single_keyframe="skip", method=method, report=report)

    def _run_flow(self, func, args, apply, label, **kwargs) -> None:
        """Run a flow function in the task bar's worker thread; ``apply(session, result)`` runs
        in the GUI thread with the result, or with what was done before a cancel or a failure."""
        from ..tracking.flow import FlowError

        if self.taskbar.busy:
            show_info("Optical flow is still running; wait for it or cancel it (Esc).")
            return
        session = self.session
        try:
            frames = open_frames(self.cine_layer)
        except DustrackError as exc:
            notify_error(exc)
            return
        params = self.lk_params()

        def job(progress=None, cancel=None):
            # Expected endings come back as results: an exception leaving the worker would be
            # re-raised in the GUI thread as a traceback (see the report on TaskBar).
            try:
                return func(frames, *args, params=params, progress=progress, cancel=cancel, **kwargs), None
            except Cancelled as exc:  # keep what was computed before the cancel
                return exc.partial, exc
            except FlowError as exc:  # keep what was computed before the failure
                return exc.partial, exc
            except DustrackError as exc:
                return None, exc
            finally:
                if hasattr(frames, "close"):
                    frames.close()

        def keep(result):
            if result is None:
                return
            if session is self.session:
                apply(session, result)
            else:
                show_info("The video changed while optical flow ran; its result was dropped.")

        def done(outcome):
            result, error = outcome
            keep(result)
            if isinstance(error, Cancelled):
                show_info("Cancelled; the frames done so far are kept.")
            elif error is not None:
                notify_error(error)

        self.taskbar.run(job, on_done=done, on_cancel=keep, label=label)

    def cancel_task(self) -> None:
        self.taskbar.cancel()

    # ================================================================== review
    def set_range_to_segment(self) -> None:
        self.review_panel.set_range(*self._segment())

    def _segment(self) -> tuple[int, int]:
        f = self.frame
        keys = self.session.keyframes() if self.session is not None else []
        lo = f if f in keys else (self.session.previous_keyframe(f) if self.session is not None else None)
        hi = self.session.next_keyframe(f) if self.session is not None else None
        last = (self.session.n_frames or 1) - 1 if self.session is not None else 0
        return (0 if lo is None else lo), (last if hi is None else hi)

    def accept_range(self, start: int | None = None, end: int | None = None) -> int:
        """Mark the flow points on frames ``start..end`` (default: the Review range) reviewed."""
        if not self._need_session():
            return 0
        start = self.from_spin.value() if start is None else int(start)
        end = self.to_spin.value() if end is None else int(end)
        n = self.session.accept(start, end, self._scope_labels())
        show_info(f"Accepted {n} point(s) on frames {min(start, end)}-{max(start, end)}.")
        return n

    def accept_segment(self) -> int:
        lo, hi = self._segment()
        return self.accept_range(lo, hi)

    # ================================================================== predictions
    def prediction_layers(self) -> list:
        """Visible prediction Points layers (model, smoothed points): their points can be dragged."""
        from napari.layers import Points

        return [layer for layer in self.viewer.layers
                if isinstance(layer, Points) and role_of(layer) == "prediction" and layer.visible]

    def install_on_prediction(self, layer) -> None:
        """Keys and drags on a prediction layer act on the annotations (see _annotate_mouse)."""
        if getattr(layer, "_dustrack_review", False):
            return
        _annotate_keys.install(layer, self)
        _annotate_mouse.install(layer, self, prediction=True)
        layer._dustrack_review = True

    def _prediction_source(self, name: str | None):
        names = [name] if name else ["model", "smoothed points"]
        for n in names:
            if n in self.viewer.layers:
                return self.viewer.layers[n]
        return None

    def accept_predictions(self, start: int | None = None, end: int | None = None, *,
                           min_confidence: float = 0.0, source: str | None = None) -> int:
        """Copy a prediction layer's points on frames ``start..end`` (all frames when None) with
        at least ``min_confidence`` into the annotations as reviewed points (one undo step).

        Returns the number written, or -1 when a long cine's predictions are being compared in
        a worker thread (written when it is done; :attr:`accepting` is true meanwhile)."""
        if not self._need_session():
            return 0
        layer = self._prediction_source(source)
        if layer is None:
            notify_error(DustrackError("no predictions to accept: press Predict (Model tab) first"))
            return 0
        shown = np.asarray(layer.shown, dtype=bool)
        data, features = np.array(layer.data)[shown], layer.features.iloc[np.flatnonzero(shown)].copy()
        session = self.session

        def changes():
            table = points_to_table(data, features.reset_index(drop=True))
            return session.prediction_changes(table, start=start, end=end,
                                              min_confidence=min_confidence)

        def commit(result):
            found, lo, hi = result
            if session is not self.session:
                return 0
            n = session.commit_predictions(found, f"accept predictions on frames {lo}-{hi}")
            where = "every frame" if start is None else f"frames {lo}-{hi}"
            show_info(f"Accepted {n} predicted point(s) of {where} as reviewed"
                      f"{'' if n else ' (manual and reviewed points are kept)'}; Ctrl+Z undoes.")
            return n

        if len(data) <= ACCEPT_INLINE_ROWS:
            try:
                return commit(changes())
            except DustrackError as exc:
                notify_error(exc)
                return 0
        # a long cine's predictions: tabulated and compared in a worker thread, written here
        from napari.qt.threading import create_worker

        worker = create_worker(changes, _ignore_errors=True)
        worker.returned.connect(commit)
        worker.errored.connect(notify_error)
        worker.start()
        self._accepting = worker
        worker.finished.connect(lambda: setattr(self, "_accepting", None))
        return -1  # applied when the worker is done

    @property
    def accepting(self) -> bool:
        return self._accepting is not None

    def accept_frame_predictions(self) -> int:
        return self.accept_predictions(self.frame, self.frame)

    def next_to_review(self) -> int | None:
        """Go to the next frame of the model's ranked list (the Model tab's review list)."""
        layer = self._prediction_source("model")
        frames = list(layer.metadata.get("review_frames", [])) if layer is not None else []
        if not frames:
            show_info("No frames to review yet: Predict in the Model tab first.")
            return None
        here = self.frame
        if here in frames:
            self._review_pos = frames.index(here)
        self._review_pos = (self._review_pos + 1) % len(frames)
        self.go_to(frames[self._review_pos])
        return frames[self._review_pos]

    def next_lost(self) -> None:
        """Go to the next frame where the last optical-flow run lost a point or was unreliable."""
        later = [f for f in self._lost if f > self.frame] or self._lost
        self._jump(later[0] if later else None,
                   "frame where flow lost a point or was unreliable after")

    def _report_flow(self, lost: dict[str, list[int]], flags=None) -> None:
        """Tell the user where the last flow run lost points or was unreliable (``flags``: a
        :class:`~napari_dustrack.tracking.flow_confidence.Flags`): the status line, one
        notification with a button to the first such frame, and K walks them all."""
        unreliable = [] if flags is None else [int(f) for f in flags.frames]
        self._lost = sorted({f for frames in lost.values() for f in frames} | set(unreliable))
        self._flow_note = "" if flags is None else flags.line("optical flow")
        self._update_controls()
        parts = [f"lost {label} on {len(frames)} frame(s) ({_frames_text(frames)})"
                 for label, frames in lost.items()]
        if unreliable:
            parts.append(f"was unreliable for {flags.points} point(s) on {len(unreliable)} "
                         f"frame(s) ({_frames_text(unreliable)})")
        if flags is not None and flags.messages:
            parts.append("; ".join(flags.messages))
        if not self._lost and not (flags is not None and flags.messages):
            return
        actions = [(f"Go to frame {self._lost[0]}", lambda *_, f=self._lost[0]: self.go_to(f))
                   ] if self._lost else []
        notify(f"Optical flow {'; '.join(parts)}. K goes to the next such frame; check the "
               "points there, drag the wrong ones (they become manual) and fill again.",
               actions=actions)

    # ================================================================== import / help
    def import_points(self, path) -> int:
        """Import DUSTrack JSON, DeepLabCut CollectedData (CSV/H5) or a native point table."""
        if not self._need_session():
            return 0
        try:
            n = self.session.import_file(path)
        except DustrackError as exc:
            notify_error(exc)
            return 0
        if self.current_label is None and self.session.labels:
            self.pick_label(self.session.labels[0])
        show_info(f"Imported {n} point(s) from {Path(path).name}.")
        return n

    def import_dialog(self) -> None:
        if not self._need_session():
            return
        path, _ = QFileDialog.getOpenFileName(self, "Import points", "", IMPORT_FILTER)
        if path:
            self.import_points(path)

    def show_keys(self) -> QDialog:
        """Open the key cheat-sheet (non-modal)."""
        if self._keys_dialog is None:
            self._keys_dialog = KeysDialog(self)
        self._keys_dialog.show()
        self._keys_dialog.raise_()
        return self._keys_dialog

    # ================================================================== status
    def _need_session(self) -> bool:
        if self.session is None:
            show_info("Open a cine first.")
            return False
        return True

    def _update_controls(self) -> None:
        s = self.session
        self.actions_row.show_history(s)
        if s is None:
            self.status.setText("")
            return
        here = s.points_at(self.frame)
        kind = "keyframe" if any(p.manual for p in here.values()) else "frame"
        saver = s.autosaver
        saved = "" if saver is None else (f" · not saved: {saver.error}" if saver.error else "")
        self.status.setText(
            f"{kind} {self.frame}/{(s.n_frames or 1) - 1} · label {self.current_label or '-'} · "
            f"{len(here)}/{len(s.labels)} here · {len(s.keyframes())} keyframes · {len(s)} points"
            f"{' · step-and-adjust' if self.step_adjust else ''}{saved}"
            f"{' · ' + self._flow_note if self._flow_note else ''}")


def _frames_text(frames: list[int], most: int = 4) -> str:
    shown = ", ".join(str(f) for f in frames[:most])
    return shown + (f", ... {frames[-1]}" if len(frames) > most else "")


def _close_holder(holder: dict) -> None:
    """Save the session of a widget Qt has deleted (the viewer closed)."""
    session = holder.get("session")
    holder["session"] = None
    if session is not None:
        try:
            session.close()
        except Exception as exc:  # noqa: BLE001 - the edits are still in the journal
            log.warning("could not save annotations on close: %s", exc)
