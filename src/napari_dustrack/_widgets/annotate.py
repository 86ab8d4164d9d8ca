"""The "Annotate" tab: labels, keyframes, optical flow, review, autosave.

The widget translates between napari layers and :class:`~napari_dustrack.session.
AnnotationSession` (the model, which also autosaves to the video's sidecar) and runs
:mod:`napari_dustrack.tracking.flow` in a worker thread. It owns two layers beside the cine:

- ``annotations`` (Points): rows ``(frame, y, x)``, features ``label, source, confidence,
  reviewed``; manual points solid, optical-flow points hollow until reviewed, then half-filled.
- ``annotation tracks`` (Tracks): one track per label, with tails.

The controls are panels that emit signals (:mod:`._annotate_panels`), wired here. The layers are
kept in step with the session by :mod:`._annotate_sync`, labels are edited in
:mod:`._annotate_labels`, flow runs in :mod:`._annotate_flow`, review and accepting predictions
in :mod:`._annotate_review`; keys live in
:mod:`._annotate_keys`, mouse handling in :mod:`._annotate_mouse`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QDialog,
    QFileDialog,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from ..errors import DustrackError
from ..session import AnnotationSession, open_session
from ._annotate_flow import FlowActions
from ._annotate_labels import LabelActions
from ._annotate_panels import (
    ActionsRow,
    FlowPanel,
    FramesPanel,
    KeysDialog,
    LabelsPanel,
    ReviewPanel,
)
from ._annotate_review import ReviewActions
from ._annotate_step import StepCarrier
from ._annotate_sync import TRACKS_DELAY_MS, LayerSync
from .common import (
    TaskBar,
    cine_info,
    current_frame,
    find_cine_layer,
    is_cine,
    notify,
    notify_error,
    open_frames,
    register_page,
    set_frame,
)

log = logging.getLogger(__name__)

IMPORT_FILTER = "Point files (*.json *.csv *.h5);;DUSTrack JSON (*.json);;DeepLabCut (*.csv *.h5)"


class AnnotateWidget(LayerSync, LabelActions, FlowActions, ReviewActions, QWidget):
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
        self.n_spin, self.scope_check, self.fill_method = (
            flow.n_spin,
            flow.scope_check,
            flow.fill_method,
        )
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
        self._carrier = StepCarrier(
            session, lambda layer=cine_layer: open_frames(layer), notify_error
        )
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
        self._jump(
            self.session.previous_keyframe(self.frame) if self.session is not None else None,
            "keyframe before",
        )

    def next_keyframe(self) -> None:
        self._jump(
            self.session.next_keyframe(self.frame) if self.session is not None else None,
            "keyframe after",
        )

    def next_missing(self) -> None:
        self._jump(
            self.session.next_missing(self.frame) if self.session is not None else None,
            "frame lacking a label besides",
        )

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
    def next_lost(self) -> None:
        """Go to the next frame where the last optical-flow run lost a point or was unreliable."""
        later = [f for f in self._lost if f > self.frame] or self._lost
        self._jump(
            later[0] if later else None, "frame where flow lost a point or was unreliable after"
        )

    def _report_flow(self, lost: dict[str, list[int]], flags=None) -> None:
        """Tell the user where the last flow run lost points or was unreliable (``flags``: a
        :class:`~napari_dustrack.tracking.flow_confidence.Flags`): the status line, one
        notification with a button to the first such frame, and K walks them all."""
        unreliable = [] if flags is None else [int(f) for f in flags.frames]
        self._lost = sorted({f for frames in lost.values() for f in frames} | set(unreliable))
        self._flow_note = "" if flags is None else flags.line("optical flow")
        self._update_controls()
        parts = [
            f"lost {label} on {len(frames)} frame(s) ({_frames_text(frames)})"
            for label, frames in lost.items()
        ]
        if unreliable:
            parts.append(
                f"was unreliable for {flags.points} point(s) on {len(unreliable)} "
                f"frame(s) ({_frames_text(unreliable)})"
            )
        if flags is not None and flags.messages:
            parts.append("; ".join(flags.messages))
        if not self._lost and not (flags is not None and flags.messages):
            return
        actions = (
            [(f"Go to frame {self._lost[0]}", lambda *_, f=self._lost[0]: self.go_to(f))]
            if self._lost
            else []
        )
        notify(
            f"Optical flow {'; '.join(parts)}. K goes to the next such frame; check the "
            "points there, drag the wrong ones (they become manual) and fill again.",
            actions=actions,
        )

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
            f"{' · ' + self._flow_note if self._flow_note else ''}"
        )


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
