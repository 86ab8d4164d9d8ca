"""The Annotate widget's optical flow: track N frames, fill between keyframes.

The flow functions of :mod:`napari_dustrack.tracking.flow` run in the task bar's worker thread;
their result (or what was done before a cancel or a failure) is applied to the session in the
GUI thread, and :class:`FlowController` reports where points were lost or unreliable.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info

from ..errors import Cancelled, DustrackError
from ..session import lost_frames
from ..tracking.lk import LKParams
from .common import notify, notify_error, open_frames


class FlowController:
    """Optical flow of the Annotate tab: track N frames, fill between keyframes, report.

    Parameters
    ----------
    context : AnnotateContext
        The viewer, the session, the cine and the current label.
    panel : FlowPanel
        The flow buttons, the method, the scope and the LK parameters.
    taskbar : TaskBar
        Runs the flow in a worker thread with progress and cancel.

    Attributes
    ----------
    note : str
        What the last fill said about unreliable points (for the status line).
    """

    def __init__(self, context, panel, taskbar):
        self.context = context
        self.panel = panel
        self.taskbar = taskbar
        self.note = ""
        self._lost: list[int] = []  # frames where the last flow run lost a point or was unsure
        panel.track.connect(lambda direction: self.track(direction))
        panel.fill.connect(self.fill_between)

    @property
    def session(self):
        return self.context.session

    def lk_params(self) -> LKParams:
        return self.panel.lk_params()

    def toggle_scope(self) -> None:
        self.panel.scope_check.setChecked(not self.panel.scope_check.isChecked())

    def scope_labels(self) -> list[str]:
        """The labels flow and accepting act on: the current one only, or all of them."""
        if self.session is None:
            return []
        label = self.context.current_label
        if self.panel.scope_check.isChecked():
            return [label] if label else []
        return self.session.labels

    def track(self, direction: int, n: int | None = None) -> None:
        """Track the points of this frame ``n`` frames forward (direction 1) or backward (-1)."""
        if not self.context.need_session():
            return
        from ..tracking.flow import propagate

        f0 = self.context.frame
        labels = [lab for lab in self.scope_labels() if self.session.point(f0, lab) is not None]
        if not labels:
            show_info(f"No points on frame {f0} to track.")
            return
        n = int(n if n is not None else self.panel.n_spin.value())
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
            session.apply_flow(xy[1:], labels, rows[1 : len(xy)], conf[1:], action=action)
            self.report(lost_frames(xy[1:], labels, rows[1 : len(xy)]))

        self._run_flow(propagate, (f0, xy0, steps), apply, f"tracking {abs(steps)} frames")

    def fill_between(self) -> None:
        """Fill between consecutive keyframes of every label in scope (LK + RSTC)."""
        if not self.context.need_session():
            return
        from ..tracking.flow import fill_between

        labels = [lab for lab in self.scope_labels() if len(self.session.keyframes(lab)) >= 2]
        if not labels:
            show_info("Fill needs a label with at least two keyframes (manual points).")
            return
        keys = self.session.keys_array(labels)
        spans = {lab: (min(k), max(k)) for lab in labels for k in [self.session.keyframes(lab)]}
        method = self.panel.fill_method.currentText()
        report: dict = {}  # filled by the worker: the unreliable points (flow_confidence.Flags)

        def apply(session, result):
            xy, conf = result
            # unreliable points keep their confidence: accepted, they stay source "flow",
            # reviewed, and training weighs them by it
            session.apply_flow(xy, labels, None, conf, action="fill between keyframes")
            self.report(lost_frames(xy, labels, spans=spans), report.get("flags"))

        self._run_flow(
            fill_between,
            (keys,),
            apply,
            f"filling {len(labels)} label(s) ({method})",
            labels=labels,
            single_keyframe="skip",
            method=method,
            report=report,
        )

    def _run_flow(self, func, args, apply, label, **kwargs) -> None:
        """Run a flow function in the task bar's worker thread; ``apply(session, result)`` runs
        in the GUI thread with the result, or with what was done before a cancel or a failure."""
        from ..tracking.flow import FlowError

        if self.taskbar.busy:
            show_info("Optical flow is still running; wait for it or cancel it (Esc).")
            return
        session = self.session
        try:
            frames = open_frames(self.context.cine_layer)
        except DustrackError as exc:
            notify_error(exc)
            return
        params = self.lk_params()

        def job(progress=None, cancel=None):
            # Expected endings come back as results: an exception leaving the worker would be
            # re-raised in the GUI thread as a traceback (see the report on TaskBar).
            try:
                return func(
                    frames, *args, params=params, progress=progress, cancel=cancel, **kwargs
                ), None
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
            if session is self.context.session:
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

    def next_lost(self) -> None:
        """Go to the next frame where the last optical-flow run lost a point or was unreliable."""
        later = [f for f in self._lost if f > self.context.frame] or self._lost
        self.context.jump(
            later[0] if later else None, "frame where flow lost a point or was unreliable after"
        )

    def report(self, lost: dict[str, list[int]], flags=None) -> None:
        """Tell the user where the last flow run lost points or was unreliable (``flags``: a
        :class:`~napari_dustrack.tracking.flow_confidence.Flags`): the status line, one
        notification with a button to the first such frame, and K walks them all."""
        unreliable = [] if flags is None else [int(f) for f in flags.frames]
        self._lost = sorted({f for frames in lost.values() for f in frames} | set(unreliable))
        self.note = "" if flags is None else flags.line("optical flow")
        self.context.status_changed.emit()
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
        go_to = self.context.go_to
        actions = (
            [(f"Go to frame {self._lost[0]}", lambda *_, f=self._lost[0]: go_to(f))]
            if self._lost
            else []
        )
        notify(
            f"Optical flow {'; '.join(parts)}. K goes to the next such frame; check the "
            "points there, drag the wrong ones (they become manual) and fill again.",
            actions=actions,
        )


def _frames_text(frames: list[int], most: int = 4) -> str:
    shown = ", ".join(str(f) for f in frames[:most])
    return shown + (f", ... {frames[-1]}" if len(frames) > most else "")
