"""The "Annotate" tab: labels, keyframes, optical flow, review, autosave.

The widget translates between napari layers and :class:`~napari_dustrack.session.
AnnotationSession` (the model, which also autosaves to the video's sidecar) and runs
:mod:`napari_dustrack.tracking.flow` in a worker thread. It owns two layers beside the cine:

- ``annotations`` (Points): rows ``(frame, y, x)``, features ``label, source, confidence,
  reviewed``; manual points solid, optical-flow points hollow until reviewed, then half-filled.
- ``annotation tracks`` (Tracks): one track per label, with tails.

The widget is composed, as napari-animation's ``AnimationWidget`` composes its panels: panels own
the controls and emit signals (:mod:`._annotate_panels`); parts own the state and the actions
behind them, sharing one small :class:`~._annotate_context.AnnotateContext` (the viewer, the
session, the cine, the current label): the layers (:mod:`._annotate_sync`), the labels
(:mod:`._annotate_labels`), the frames and step-and-adjust (:mod:`._annotate_frames`), optical
flow (:mod:`._annotate_flow`) and review (:mod:`._annotate_review`). The widget binds a cine,
wires the parts, and keeps the names that keys (:mod:`._annotate_keys`), the mouse
(:mod:`._annotate_mouse`), the other tabs and tests use, each served by the part that owns it.
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QDialog, QFileDialog, QLabel, QVBoxLayout, QWidget

from ..errors import DustrackError
from ..session import AnnotationSession, Change, open_session
from . import _annotate_keys, _annotate_mouse
from ._annotate_context import AnnotateContext, Delegate
from ._annotate_flow import FlowController
from ._annotate_frames import FramesController
from ._annotate_labels import LabelsController
from ._annotate_panels import (
    ActionsRow,
    FlowPanel,
    FramesPanel,
    KeysDialog,
    LabelsPanel,
    ReviewPanel,
)
from ._annotate_review import ReviewController
from ._annotate_sync import AnnotationLayers
from .common import TaskBar, cine_info, find_cine_layer, is_cine, notify_error, register_page

log = logging.getLogger(__name__)

IMPORT_FILTER = "Point files (*.json *.csv *.h5);;DUSTrack JSON (*.json);;DeepLabCut (*.csv *.h5)"


class AnnotateWidget(QWidget):
    """Keyframe annotation, optical-flow propagation and review for the cine in the viewer.

    Attributes
    ----------
    context : AnnotateContext
        What the parts share: the viewer, the session, the cine, the current label.
    annotation_layers : AnnotationLayers
        The ``annotations`` and ``annotation tracks`` layers, kept in step with the session.
    labels, frames, flow, review : LabelsController, FramesController, FlowController, ...
        The parts behind the Labels, Frames, Optical flow and Review panels (the last a
        ReviewController).
    """

    # ---- the widget's names (keys, mouse, other tabs, tests), each served by its part
    session = Delegate("context")
    cine_layer = Delegate("context")
    current_label = Delegate("context")
    frame = Delegate("context")
    go_to = Delegate("context")
    points_layer = Delegate("annotation_layers")
    tracks_layer = Delegate("annotation_layers")
    refresh = Delegate("annotation_layers")
    refresh_tracks = Delegate("annotation_layers")
    _tracks_timer = Delegate("annotation_layers", "tracks_timer")
    add_label = Delegate("labels")
    add_label_dialog = Delegate("labels")
    rename_label = Delegate("labels")
    remove_label = Delegate("labels")
    move_label = Delegate("labels")
    colour_dialog = Delegate("labels")
    pick_label = Delegate("labels")
    pick_label_index = Delegate("labels")
    cycle_label = Delegate("labels")
    step = Delegate("frames")
    focus_jump = Delegate("frames")
    previous_keyframe = Delegate("frames")
    next_keyframe = Delegate("frames")
    next_missing = Delegate("frames")
    step_adjust = Delegate("frames")
    toggle_step_adjust = Delegate("frames")
    set_step_adjust = Delegate("frames")
    carrying = Delegate("frames")
    last_step_ms = Delegate("frames")
    lk_params = Delegate("flow")
    toggle_scope = Delegate("flow")
    track = Delegate("flow")
    fill_between = Delegate("flow")
    cancel_task = Delegate("flow")
    next_lost = Delegate("flow")
    _report_flow = Delegate("flow", "report")
    set_range_to_segment = Delegate("review")
    accept_range = Delegate("review")
    accept_segment = Delegate("review")
    accept_predictions = Delegate("review")
    accept_frame_predictions = Delegate("review")
    accepting = Delegate("review")
    next_to_review = Delegate("review")
    prediction_layers = Delegate("review")

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.context = AnnotateContext(napari_viewer, self)
        self._keys_dialog = None
        self._holder = {"session": None}
        self._on_predictions = weakref.WeakSet()  # prediction layers our keys/mouse act on
        self.annotation_layers = AnnotationLayers(self.context, self)
        self.annotation_layers.points_layer_added.connect(self._install_keys_and_mouse)
        self._build_ui()
        self.context.status_changed.connect(self._update_controls)
        self.context.label_changed.connect(self._update_controls)
        register_page(napari_viewer, "annotate", self)
        self.destroyed.connect(lambda *_, h=self._holder: _close_holder(h))
        napari_viewer.layers.events.inserted.connect(self._on_layer_inserted)
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        cine = find_cine_layer(napari_viewer)
        if cine is not None and is_cine(cine):
            self.bind(cine)
        self._update_controls()

    # ================================================================== UI
    def _build_ui(self) -> None:
        """The panels, the parts behind them, and the status."""
        layout = QVBoxLayout(self)
        self.video_label = QLabel("Open a cine (File > Open) to annotate it.")
        self.video_label.setWordWrap(True)
        layout.addWidget(self.video_label)
        labels, frames, flow = LabelsPanel(), FramesPanel(), FlowPanel()
        review, actions = ReviewPanel(), ActionsRow()
        for panel in (labels, frames, flow, review, actions):
            layout.addWidget(panel)
        self.taskbar = TaskBar(self)
        layout.addWidget(self.taskbar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.labels = LabelsController(self.context, labels)
        self.frames = FramesController(self.context, frames, flow.lk_params)
        self.flow = FlowController(self.context, flow, self.taskbar)
        self.review = ReviewController(self.context, review, self.flow.scope_labels)
        frames.copy_previous.connect(self.copy_previous)
        actions.undo.connect(self.undo)
        actions.redo.connect(self.redo)
        actions.import_requested.connect(self.import_dialog)
        actions.keys_requested.connect(self.show_keys)
        self.actions_row = actions
        # the controls tests, keys and the screenshots reach by name
        self.label_list = labels.label_list
        self.jump_spin, self.step_check = frames.jump_spin, frames.step_check
        self.n_spin, self.scope_check, self.fill_method = (
            flow.n_spin,
            flow.scope_check,
            flow.fill_method,
        )
        self.win_spin, self.level_spin = flow.win_spin, flow.level_spin
        self.iter_spin, self.eps_spin = flow.iter_spin, flow.eps_spin
        self.from_spin, self.to_spin = review.from_spin, review.to_spin
        self.undo_button, self.redo_button = actions.undo_button, actions.redo_button

    def _install_keys_and_mouse(self, layer) -> None:
        _annotate_keys.install(layer, self)
        _annotate_mouse.install(layer, self)

    def install_on_prediction(self, layer) -> None:
        """Keys and drags on a prediction layer act on the annotations (see _annotate_mouse)."""
        if layer in self._on_predictions:
            return
        _annotate_keys.install(layer, self)
        _annotate_mouse.install(layer, self, prediction=True)
        self._on_predictions.add(layer)

    # ================================================================== binding
    def bind(self, cine_layer) -> None:
        """Annotate ``cine_layer``: restore its sidecar, create our layers, bind keys/mouse."""
        context = self.context
        if cine_layer is context.cine_layer:
            return
        self.unbind()
        info = cine_info(cine_layer)
        n_frames = int(info.get("n_frames") or cine_layer.data.shape[0])
        path = info.get("path")
        session = _open_session(path, n_frames)
        context.session = self._holder["session"] = session
        context.cine_layer = cine_layer
        session.on_change.append(self._on_session_change)
        self.frames.start(session, cine_layer)
        labels = session.labels
        context.current_label = labels[0] if labels else None
        self.review.start(n_frames)
        self.annotation_layers.make_points_layer()
        self.labels.refresh_list()
        self.refresh()
        self.refresh_tracks()
        self.frames.rewind()
        name = Path(path).name if path else cine_layer.name
        if path and session.autosaver is not None:
            restored = f"; restored {len(session)} points" if len(session) or labels else ""
            self.video_label.setText(f"{name}: autosaved to {Path(path).name}.dustrack/{restored}")
        else:
            self.video_label.setText(f"{name}: not autosaved (no file behind this layer)")
        self._update_controls()

    def unbind(self) -> None:
        """Save and stop annotating the current cine; our layers are removed."""
        context = self.context
        session = context.session
        if session is None:
            return
        if self._on_session_change in session.on_change:
            session.on_change.remove(self._on_session_change)
        try:
            session.close()
        except DustrackError as exc:
            notify_error(exc)
        context.session = self._holder["session"] = None
        context.cine_layer = None
        self.annotation_layers.remove()
        self.frames.stop()
        self.label_list.clear()
        self.video_label.setText("Open a cine (File > Open) to annotate it.")

    def closeEvent(self, event) -> None:
        self.unbind()
        super().closeEvent(event)

    def _on_session_change(self, change: Change) -> None:
        if change.labels is not None:
            self.labels.refresh_list()
        self.annotation_layers.on_session_change(change)

    def _on_layer_inserted(self, event) -> None:
        layer = event.value
        if is_cine(layer) and layer is not self.cine_layer:
            # bind after napari has finished inserting (we add layers ourselves)
            QTimer.singleShot(0, lambda: self.bind(layer) if layer in self.viewer.layers else None)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if layer is self.cine_layer:
            QTimer.singleShot(0, self.unbind)
        else:
            self.annotation_layers.forget(layer)

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

    # ================================================================== import / help
    def import_points(self, path) -> int:
        """Import DUSTrack JSON, DeepLabCut CollectedData (CSV/H5) or a native point table."""
        if not self.context.need_session():
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
        if not self.context.need_session():
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
    def _update_controls(self) -> None:
        s = self.session
        self.actions_row.show_history(s)
        if s is None:
            self.status.setText("")
            return
        frame = self.frame
        here = s.points_at(frame)
        kind = "keyframe" if any(p.manual for p in here.values()) else "frame"
        saver = s.autosaver
        saved = "" if saver is None else (f" · not saved: {saver.error}" if saver.error else "")
        note = self.flow.note
        self.status.setText(
            f"{kind} {frame}/{(s.n_frames or 1) - 1} · label {self.current_label or '-'} · "
            f"{len(here)}/{len(s.labels)} here · {len(s.keyframes())} keyframes · {len(s)} points"
            f"{' · step-and-adjust' if self.step_adjust else ''}{saved}"
            f"{' · ' + note if note else ''}"
        )


def _open_session(path, n_frames: int) -> AnnotationSession:
    """The annotations of the video at ``path``, autosaved to its sidecar; an unsaved session
    when there is no file, or when its sidecar cannot be used (the user is told)."""
    if path:
        try:
            return open_session(path, n_frames)
        except DustrackError as exc:
            notify_error(exc)
            show_warning("Annotations of this video will NOT be saved.")
    return AnnotationSession(n_frames)


def _close_holder(holder: dict) -> None:
    """Save the session of a widget Qt has deleted (the viewer closed)."""
    session = holder.get("session")
    holder["session"] = None
    if session is not None:
        try:
            session.close()
        except Exception as exc:  # noqa: BLE001 - the edits are still in the journal
            log.warning("could not save annotations on close: %s", exc)
