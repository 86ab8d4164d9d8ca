"""Step-and-adjust for the Annotate widget: each step to the next frame carries every label there
with one Lucas-Kanade step, so the user only nudges what is off.

A carry reads a frame, converts it to grayscale and runs LK forward plus a forward-backward
check: ~12 ms of CPU on a 600x800 cine, but past 50 ms of wall time on a busy machine (see
docs/benchmarks/annotate.md), so carries run in a worker thread, one after another, each
starting from the points the previous one left (so quick key presses stay correct). The GUI
thread only stores results; flow never overwrites a manual or accepted point.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np

from ..io.pixels import to_gray_u8
from ..tracking.flow import step_points
from ..tracking.lk import LKParams

GRAY_CACHE = 4  # frames kept: a step needs the previous one again


class StepCarrier:
    """Carries the points of one session/cine forward, one frame per step.

    Parameters
    ----------
    session : AnnotationSession
    open_frames : callable
        Returns a frame reader (``len``, ``[i]``), used only by the worker thread.
    on_error : callable
        Called in the GUI thread with an exception raised by a carry.
    """

    def __init__(self, session, open_frames, on_error):
        self.session = session
        self._open_frames = open_frames
        self._on_error = on_error
        self._queue: list[tuple[int, int, LKParams]] = []
        self._worker = None
        self._frames = None
        self._gray: OrderedDict[int, np.ndarray] = OrderedDict()
        self._closed = False
        self.last_ms: float | None = None

    @property
    def busy(self) -> bool:
        """Whether a carry is queued or running."""
        return self._worker is not None or bool(self._queue)

    def carry(self, f0: int, f1: int, params: LKParams) -> None:
        """Queue a carry of every label on ``f0`` to ``f1``."""
        if self._closed:
            return
        self._queue.append((int(f0), int(f1), params))
        if self._worker is None:
            self._next()

    def close(self) -> None:
        """Drop queued carries; the reader closes now, or when the running carry ends."""
        self._closed = True
        self._queue.clear()
        if self._worker is None:
            self._release()

    def _next(self) -> None:
        from napari.qt.threading import create_worker

        self._worker = None
        if self._closed:
            self._release()
            return
        session = self.session
        while self._queue:
            f0, f1, params = self._queue.pop(0)
            labels = [lab for lab in session.labels if session.point(f0, lab) is not None]
            if not labels:
                continue
            xy0 = session.positions(f0, labels)
            t0 = time.perf_counter()
            worker = create_worker(self._job, f0, f1, xy0, params, _ignore_errors=True)
            worker.returned.connect(
                lambda result, labels=labels, f1=f1, t0=t0: self._done(result, labels, f1, t0)
            )
            worker.errored.connect(self._on_error)
            worker.finished.connect(self._next)
            self._worker = worker
            worker.start()
            return

    def _job(self, f0: int, f1: int, xy0: np.ndarray, params: LKParams):
        """One LK step with a forward-backward check (worker thread)."""
        return step_points(self._gray_frame(f0), self._gray_frame(f1), xy0, params=params)

    def _done(self, result, labels, f1: int, t0: float) -> None:
        if self._closed:
            return
        xy1, conf = result
        self.session.apply_flow(xy1[None], labels, [f1], conf[None], action="step")
        self.last_ms = 1000 * (time.perf_counter() - t0)

    def _gray_frame(self, i: int) -> np.ndarray:
        if i in self._gray:
            self._gray.move_to_end(i)
            return self._gray[i]
        if self._frames is None:
            self._frames = self._open_frames()
        image = to_gray_u8(np.asarray(self._frames[i]))
        self._gray[i] = image
        while len(self._gray) > GRAY_CACHE:
            self._gray.popitem(last=False)
        return image

    def _release(self) -> None:
        frames, self._frames = self._frames, None
        self._gray.clear()
        if frames is not None and hasattr(frames, "close"):
            frames.close()
