"""The Annotate tab's frames: go to a frame, keyframe navigation, step-and-adjust.

:class:`FramesController` follows napari's frame slider, drives the Frames panel and, in
step-and-adjust mode, hands each single step forward to a :class:`~._annotate_step.StepCarrier`
(which carries the points there in a worker thread).
"""

from __future__ import annotations

from ._annotate_step import StepCarrier
from .common import current_frame, notify_error, open_frames


class FramesController:
    """Frame navigation and step-and-adjust of the Annotate tab.

    Parameters
    ----------
    context : AnnotateContext
        The viewer and the session.
    panel : FramesPanel
        The frame spin box, the navigation buttons and the step-and-adjust check box.
    lk_params : callable
        Returns the :class:`~napari_dustrack.tracking.lk.LKParams` a carry uses.
    """

    def __init__(self, context, panel, lk_params):
        self.context = context
        self.panel = panel
        self._lk_params = lk_params
        self.step_adjust = False
        viewer = context.viewer
        self._frame = current_frame(viewer) if viewer.dims.ndim else 0
        self._carrier: StepCarrier | None = None
        panel.go_to.connect(context.go_to)
        panel.previous_keyframe.connect(self.previous_keyframe)
        panel.next_keyframe.connect(self.next_keyframe)
        panel.next_missing.connect(self.next_missing)
        panel.step_check.toggled.connect(self.set_step_adjust)
        viewer.dims.events.current_step.connect(self._on_frame_changed)

    def start(self, session, cine_layer) -> None:
        """A new cine is bound: carries read its frames; the slider starts at frame 0."""
        self._carrier = StepCarrier(
            session, lambda layer=cine_layer: open_frames(layer), notify_error
        )
        n_frames = session.n_frames
        self.panel.jump_spin.setRange(0, max(n_frames - 1, 0))

    def rewind(self) -> None:
        """Put the slider on frame 0: adding layers puts napari's slider mid-way, and a freshly
        opened cine starts at 0."""
        self.context.go_to(0)
        self._frame = 0

    def stop(self) -> None:
        """The cine is unbound: queued carries are dropped and its reader closed."""
        if self._carrier is not None:
            self._carrier.close()
            self._carrier = None

    def step(self, delta: int) -> None:
        """Move ``delta`` frames (a single step forward carries points in step-and-adjust mode)."""
        self.context.go_to(self.context.frame + int(delta))

    def focus_jump(self) -> None:
        self.panel.jump_spin.setFocus()
        self.panel.jump_spin.selectAll()

    def previous_keyframe(self) -> None:
        self._jump_with(lambda s, f: s.previous_keyframe(f), "keyframe before")

    def next_keyframe(self) -> None:
        self._jump_with(lambda s, f: s.next_keyframe(f), "keyframe after")

    def next_missing(self) -> None:
        self._jump_with(lambda s, f: s.next_missing(f), "frame lacking a label besides")

    def _jump_with(self, find, what: str) -> None:
        session, frame = self.context.session, self.context.frame
        self.context.jump(find(session, frame) if session is not None else None, what)

    def _on_frame_changed(self, event=None) -> None:
        if not self.context.viewer.dims.ndim:
            return
        new, old = self.context.frame, self._frame
        self._frame = new
        self.panel.show_frame(new)
        if self.step_adjust and self._carrier is not None and new == old + 1:
            self._carrier.carry(old, new, self._lk_params())
        self.context.status_changed.emit()

    # ---------------------------------------------------------------- step-and-adjust
    def toggle_step_adjust(self) -> None:
        check = self.panel.step_check
        check.setChecked(not check.isChecked())

    def set_step_adjust(self, on: bool) -> None:
        self.step_adjust = bool(on)
        if self.panel.step_check.isChecked() != self.step_adjust:
            self.panel.step_check.setChecked(self.step_adjust)
        self.context.status_changed.emit()

    @property
    def carrying(self) -> bool:
        """Whether a step-and-adjust carry is queued or running."""
        return self._carrier is not None and self._carrier.busy

    @property
    def last_step_ms(self) -> float | None:
        """Wall time of the last carry, from the key press to the stored points (ms)."""
        return None if self._carrier is None else self._carrier.last_ms
