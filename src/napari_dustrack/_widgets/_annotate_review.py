"""The Annotate widget's review: accept flow ranges, accept predictions, walk the review list.

Prediction layers (model, smoothed points) are read-only views; accepting copies their points
into the session as reviewed points, in one undo step.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info

from ..errors import DustrackError
from ..io.layers import points_to_table
from .common import REVIEW_KEY, notify_error, role_of

ACCEPT_INLINE_ROWS = 20_000  # more predictions than this are compared in a worker thread


class ReviewController:
    """Review in the Annotate tab: accept flow ranges and predictions, walk the review list.

    Parameters
    ----------
    context : AnnotateContext
        The viewer and the session.
    panel : ReviewPanel
        The range of frames Accept marks reviewed.
    scope_labels : callable
        Returns the labels accepting a range acts on (the flow's scope: current label or all).
    """

    def __init__(self, context, panel, scope_labels):
        self.context = context
        self.viewer = context.viewer
        self.panel = panel
        self._scope_labels = scope_labels
        self._review_pos = -1
        self._accepting = None  # a worker comparing many predictions with the annotations
        panel.segment_requested.connect(self.set_range_to_segment)
        panel.accept_requested.connect(lambda: self.accept_range())

    @property
    def session(self):
        return self.context.session

    def start(self, n_frames: int) -> None:
        """A new cine is bound: the range covers all of its ``n_frames`` frames."""
        for spin in (self.panel.from_spin, self.panel.to_spin):
            spin.setRange(0, max(n_frames - 1, 0))
        self.panel.to_spin.setValue(max(n_frames - 1, 0))

    def set_range_to_segment(self) -> None:
        self.panel.set_range(*self._segment())

    def _segment(self) -> tuple[int, int]:
        """The keyframes around the current frame (the video's ends where there is none)."""
        session, f = self.session, self.context.frame
        if session is None:
            return 0, 0
        lo = f if f in session.keyframes() else session.previous_keyframe(f)
        hi = session.next_keyframe(f)
        return (0 if lo is None else lo), ((session.n_frames or 1) - 1 if hi is None else hi)

    def accept_range(self, start: int | None = None, end: int | None = None) -> int:
        """Mark the flow points on frames ``start..end`` (default: the Review range) reviewed."""
        if not self.context.need_session():
            return 0
        start = self.panel.from_spin.value() if start is None else int(start)
        end = self.panel.to_spin.value() if end is None else int(end)
        n = self.session.accept(start, end, self._scope_labels())
        show_info(f"Accepted {n} point(s) on frames {min(start, end)}-{max(start, end)}.")
        return n

    def accept_segment(self) -> int:
        lo, hi = self._segment()
        return self.accept_range(lo, hi)

    def prediction_layers(self) -> list:
        """Visible prediction Points layers (model, smoothed points): their points are draggable."""
        from napari.layers import Points

        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Points) and role_of(layer) == "prediction" and layer.visible
        ]

    def _prediction_source(self, name: str | None):
        names = [name] if name else ["model", "smoothed points"]
        for n in names:
            if n in self.viewer.layers:
                return self.viewer.layers[n]
        return None

    def accept_predictions(
        self,
        start: int | None = None,
        end: int | None = None,
        *,
        min_confidence: float = 0.0,
        source: str | None = None,
    ) -> int:
        """Copy a prediction layer's points on frames ``start..end`` (all frames when None) with
        at least ``min_confidence`` into the annotations as reviewed points (one undo step).

        Returns the number written, or -1 when a long cine's predictions are being compared in
        a worker thread (written when it is done; :attr:`accepting` is true meanwhile)."""
        if not self.context.need_session():
            return 0
        layer = self._prediction_source(source)
        if layer is None:
            notify_error(DustrackError("no predictions to accept: press Predict (Model tab) first"))
            return 0
        shown = np.asarray(layer.shown, dtype=bool)
        data, features = (
            np.array(layer.data)[shown],
            layer.features.iloc[np.flatnonzero(shown)].copy(),
        )
        session = self.session

        def changes():
            table = points_to_table(data, features.reset_index(drop=True))
            return session.prediction_changes(
                table, start=start, end=end, min_confidence=min_confidence
            )

        def commit(result):
            found, lo, hi = result
            if session is not self.context.session:
                return 0
            n = session.commit_predictions(found, f"accept predictions on frames {lo}-{hi}")
            where = "every frame" if start is None else f"frames {lo}-{hi}"
            show_info(
                f"Accepted {n} predicted point(s) of {where} as reviewed"
                f"{'' if n else ' (manual and reviewed points are kept)'}; Ctrl+Z undoes."
            )
            return n

        if len(data) <= ACCEPT_INLINE_ROWS:
            try:
                return commit(changes())
            except DustrackError as exc:
                notify_error(exc)
                return 0
        return self._compare_in_worker(changes, commit)

    def _compare_in_worker(self, changes, commit) -> int:
        """A long cine's predictions: tabulated and compared in a worker thread, written here
        when it is done; -1 meanwhile."""
        from napari.qt.threading import create_worker

        worker = create_worker(changes, _ignore_errors=True)
        worker.returned.connect(commit)
        worker.errored.connect(notify_error)
        worker.start()
        self._accepting = worker
        worker.finished.connect(self._accepted)
        return -1

    def _accepted(self) -> None:
        self._accepting = None

    @property
    def accepting(self) -> bool:
        """Whether a long cine's predictions are being compared in a worker thread."""
        return self._accepting is not None

    def accept_frame_predictions(self) -> int:
        frame = self.context.frame
        return self.accept_predictions(frame, frame)

    def next_to_review(self) -> int | None:
        """Go to the next frame of the model's ranked list (the Model tab's review list)."""
        layer = self._prediction_source("model")
        frames = list(layer.metadata.get(REVIEW_KEY, [])) if layer is not None else []
        if not frames:
            show_info("No frames to review yet: Predict in the Model tab first.")
            return None
        here = self.context.frame
        if here in frames:
            self._review_pos = frames.index(here)
        self._review_pos = (self._review_pos + 1) % len(frames)
        self.context.go_to(frames[self._review_pos])
        return frames[self._review_pos]
