"""The Annotate widget's review: accept flow ranges, accept predictions, walk the review list.

Prediction layers (model, smoothed points) are read-only views; accepting copies their points
into the session as reviewed points, in one undo step.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info

from ..errors import DustrackError
from ..io.layers import points_to_table
from . import _annotate_keys, _annotate_mouse
from .common import REVIEW_KEY, notify_error, role_of

ACCEPT_INLINE_ROWS = 20_000  # more predictions than this are compared in a worker thread


class ReviewActions:
    """Part of :class:`~napari_dustrack._widgets.annotate.AnnotateWidget`: review and accept."""

    def set_range_to_segment(self) -> None:
        self.review_panel.set_range(*self._segment())

    def _segment(self) -> tuple[int, int]:
        f = self.frame
        keys = self.session.keyframes() if self.session is not None else []
        lo = (
            f
            if f in keys
            else (self.session.previous_keyframe(f) if self.session is not None else None)
        )
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

    def prediction_layers(self) -> list:
        """Visible prediction Points layers (model, smoothed points): their points are draggable."""
        from napari.layers import Points

        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Points) and role_of(layer) == "prediction" and layer.visible
        ]

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
        if not self._need_session():
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
            if session is not self.session:
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
        frames = list(layer.metadata.get(REVIEW_KEY, [])) if layer is not None else []
        if not frames:
            show_info("No frames to review yet: Predict in the Model tab first.")
            return None
        here = self.frame
        if here in frames:
            self._review_pos = frames.index(here)
        self._review_pos = (self._review_pos + 1) % len(frames)
        self.go_to(frames[self._review_pos])
        return frames[self._review_pos]
