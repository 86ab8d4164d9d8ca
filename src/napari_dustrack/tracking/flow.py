"""Optical-flow propagation and keyframe interpolation (LK + reverse-sigmoid tracking correction).

:func:`fill_between` fills the frames between consecutive keyframes of every label with RSTC
(Magana-Salgado et al. 2023): a forward Lucas-Kanade track ``F`` from the earlier keyframe and a
backward track ``B`` from the later one, blended with :func:`~.lk.rstc_weight` so that the result
passes exactly through both keyframes. :func:`propagate` tracks points from one frame forward or
backward. Both run on the same engine:

* Frames are decoded once, in increasing order (by a reader thread a few frames ahead of the
  tracking, when they come from a reader rather than an array), and converted to grayscale once.
* **Forward visit.** At each frame pair ``(u, u + 1)`` one LK call carries the forward track of
  every label whose keyframe span (or forward extension) covers the pair; a track restarts from the
  keyframe position at every keyframe.
* **Backward sweeps.** Backward tracks need the later keyframe, so they run as soon as every
  backward track of the pairs behind the current frame has its keyframe (a *cut* frame), sweeping
  down with one LK call per pair that carries every label. Only the frames between the last sweep
  and the current frame are kept; a memory budget (``CACHE_BYTES``) forces an earlier, partial
  sweep when keyframes of different labels never line up. With more than two CPUs the sweeps run
  in a worker thread beside the forward visit (``SWEEP_THREAD``).
* A long backward :func:`propagate` runs in blocks that fit the budget, top block first, each
  block read in increasing order.
* Backward extension (``extend`` before the first keyframe) is checked by tracking each step
  forward again: a second forward-direction call on those pairs, the one exception to "one call
  per pair and direction".

Why no image pyramids are reused: OpenCV's Python binding of ``calcOpticalFlowPyrLK`` (4.11 and
5.0) rejects a pre-built pyramid (a list of arrays) for ``prevImg``/``nextImg`` ("Expected
Ptr<cv::UMat>"), so every call builds its two pyramids internally, exactly as a call on raw images
does. What is shared per frame is the decode and the grayscale conversion; the savings come from
batching every label and every keyframe segment into one call per pair and direction.

Confidence (0..1, documented choices):

* Keyframes: 1.
* Between keyframes, both tracks alive: ``exp(-d_eff**2 / (2 FB_SCALE**2)) * lk_factor`` with
  ``d_eff = |F - B| * 4 w (1 - w)``: the forward-backward disagreement, weighted so that it counts
  fully mid-way and not at the keyframes, where the blend is anchored. ``lk_factor =
  exp(-(err / ERR_SCALE)**2 / 2)`` of the mean LK residual ``err`` (mean absolute grey-level
  difference in the window) of the two tracks.
* Only one track alive (LK lost the other): the survivor is used, with confidence
  ``LOST_ONE_FACTOR * weight_of_survivor * lk_factor``, so it fades out away from the survivor's
  own keyframe and never exceeds 0.5.
* Beyond the keyframes (``extend``) and in :func:`propagate`: each step is checked by tracking the
  new position back one frame; the check errors accumulate as a random walk
  ``D = sqrt(sum e_u**2)`` and the confidence is ``exp(-D**2 / (2 FB_SCALE**2)) * lk_factor``.
  A step whose check is lost counts as ``e_u = FB_SCALE``.
* Lost points (LK status 0, NaN, or outside the image) are NaN with confidence 0, and stay lost.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ..errors import Cancelled, DustrackError
from ._frames import FrameView, read_ahead
from .lk import LKParams, rstc_weight

FB_SCALE = 2.0  # pixels: forward-backward disagreement that costs ~40% confidence
ERR_SCALE = 40.0  # grey levels: mean LK residual that costs ~40% confidence
LOST_ONE_FACTOR = 0.5  # ceiling on the confidence of a single surviving track
RSTC_EPS = 0.01
CACHE_BYTES = 512 * 2**20  # frames kept for backward sweeps before a forced sweep
MIN_SWEEP = 8  # pairs: smaller sweeps are merged into the next one
MIN_BLOCK = 16  # frames: shortest block of a long backward propagation
PREFETCH = 8  # frames decoded ahead by a reader thread (0: read in the tracking thread)
# Backward sweeps run beside the forward visit in a second thread when there are cores to spare
# (OpenCV's LK already spreads its points over two threads; on two cores a second sweep thread
# only contends).
SWEEP_THREAD = (os.cpu_count() or 1) > 2
FILL_METHODS = ("robust", "dustrack")  # the first is the default

Progress = Callable[[int, int], Any]


class FlowError(DustrackError):
    """A failure part-way through (e.g. an undecodable frame), carrying what was computed before.

    ``partial`` is ``(xy, confidence)`` in the shape of the function's normal result.
    """

    def __init__(self, problem: str, path=None, partial=None):
        super().__init__(problem, path)
        self.partial = partial


# ------------------------------------------------------------------------------------------
# public API


def propagate(
    frames,
    start_frame: int,
    xy: np.ndarray,
    n_steps: int,
    params: LKParams = LKParams(),
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Track points from ``start_frame`` ``n_steps`` frames forward (> 0) or backward (< 0).

    Parameters
    ----------
    frames : sequence of 2-D arrays
        Anything with ``len()`` and ``frames[i]`` (numpy/dask array, Cine).
    start_frame : int
        Frame where ``xy`` is known.
    xy : ndarray (L, 2)
        (x, y) of each label at ``start_frame``; NaN rows are not tracked.
    n_steps : int
        Number of frames to track, signed by direction.
    params : LKParams
        Lucas-Kanade parameters.
    progress, cancel
        ``progress(done, total)`` and a ``threading.Event`` checked between frame pairs.

    Returns
    -------
    xy : ndarray (|n_steps| + 1, L, 2)
        Row 0 is ``start_frame`` (``xy`` unchanged), then successive frames in the direction of
        travel; NaN where LK lost the point or past either end of the video.
    confidence : ndarray (|n_steps| + 1, L)
        0..1 (1 at row 0 for tracked labels, 0 where NaN).

    Raises
    ------
    DustrackError
        ``start_frame`` outside the video, ``xy`` outside the image or of the wrong shape.
    FlowError
        A frame could not be decoded part-way (``partial`` holds the rows computed before it).
    Cancelled
        ``cancel`` was set; ``partial`` holds the rows computed so far.
    """
    n = _length(frames)
    start_frame, n_steps = int(start_frame), int(n_steps)
    if not 0 <= start_frame < n:
        raise DustrackError(f"start frame {start_frame} is outside the video (frames 0..{n - 1})",
                            _path_of(frames))
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise DustrackError(f"points must have shape (L, 2), got {xy.shape}")
    keys = np.full((n, len(xy), 2), np.nan)
    keys[start_frame] = xy
    direction = 1 if n_steps >= 0 else -1
    rows = start_frame + direction * np.arange(abs(n_steps) + 1)
    inside = (rows >= 0) & (rows < n)

    def reshape(full):
        out_xy = np.full((len(rows), len(xy), 2), np.nan)
        out_conf = np.zeros((len(rows), len(xy)))
        out_xy[inside], out_conf[inside] = full[0][rows[inside]], full[1][rows[inside]]
        return out_xy, out_conf

    try:
        if direction > 0:
            stop = min(start_frame + n_steps, n - 1) + 1
            win_keys = keys[start_frame:stop]
            try:
                wxy, wconf = _run(FrameView.window(frames, start_frame, stop), win_keys, params, n_steps,
                                  0, progress, cancel, None)
            except (Cancelled, FlowError) as exc:
                exc.partial = _unwindow(*exc.partial, keys.shape, start_frame)
                raise
            full = _unwindow(wxy, wconf, keys.shape, start_frame)
        else:
            full = _propagate_backward(frames, keys, start_frame, -n_steps, params, progress,
                                       cancel)
        return reshape(full)
    except Cancelled as exc:
        raise Cancelled(reshape(exc.partial)) from None
    except FlowError as exc:
        raise FlowError(exc.problem, exc.path, reshape(exc.partial)) from None


def _unwindow(wxy, wconf, shape, start):
    xy, conf = np.full(shape, np.nan), np.zeros(shape[:2])
    xy[start : start + len(wxy)], conf[start : start + len(wxy)] = wxy, wconf
    return xy, conf


def _propagate_backward(frames, keys, start, n_steps, params, progress, cancel):
    """Backward propagation in blocks of frames that fit the cache, each decoded in order.

    Going backward, nothing can be tracked until the start frame is decoded, so a single pass
    would hold every frame in between; blocks (top block first) bound that.
    """
    n_labels = keys.shape[1]
    xy = np.full(keys.shape, np.nan)
    conf = np.zeros(keys.shape[:2])
    xy[start], conf[start] = keys[start], np.where(np.isfinite(keys[start, :, 0]), 1.0, 0.0)
    steps = min(n_steps, start)
    block = max(MIN_BLOCK, CACHE_BYTES // max(_frame_bytes(frames, start), 1))
    top, pos, drift2 = start, keys[start], np.zeros(n_labels)
    done_before = 0

    def block_progress(done, total):
        if progress is not None:
            progress(done_before + done, steps)

    while top > start - steps and np.isfinite(pos).all(axis=1).any():
        b = min(block, top - (start - steps))
        block_keys = np.full((b + 1, n_labels, 2), np.nan)  # frames top - b .. top
        block_keys[b] = pos
        drift_out: list = []
        try:
            bxy, bconf = _run(FrameView.window(frames, top - b, top + 1), block_keys, params, 0, b,
                              block_progress, cancel, None, drift0=drift2, drift_out=drift_out)
        except (Cancelled, FlowError) as exc:
            bxy, bconf = exc.partial
            xy[top - b : top], conf[top - b : top] = bxy[:b], bconf[:b]
            exc.partial = (xy, conf)
            raise
        xy[top - b : top], conf[top - b : top] = bxy[:b], bconf[:b]
        pos, drift2 = bxy[0], np.nan_to_num(drift_out[0][0])
        top -= b
        done_before += b
    return xy, conf


def _frame_bytes(frames, i: int) -> int:
    shape = getattr(frames, "shape", None)
    if shape is None or len(shape) < 3:
        shape = (1,) + np.shape(frames[i])
    return int(np.prod(shape[1:3]))


def fill_between(
    frames,
    keys: np.ndarray,
    params: LKParams = LKParams(),
    extend: int = 0,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    *,
    labels: Sequence[str] | None = None,
    single_keyframe: str = "error",
    method: str = "robust",
    report: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the frames between consecutive keyframes of each label with LK + RSTC.

    Method ``dustrack`` is DUSTrack's LK-RSTC (the same numbers); ``robust`` (default) then
    tracks again the segments where that went wrong, following the image-wide (probe) motion
    (:mod:`.robust_fill`).

    Parameters
    ----------
    frames : sequence of 2-D arrays
        Anything with ``len()`` and ``frames[i]`` (numpy/dask array, Cine); visited in order.
    keys : ndarray (N, L, 2)
        (x, y) at the keyframes, NaN elsewhere. ``N`` may be shorter than the video.
    params : LKParams
        Lucas-Kanade parameters.
    extend : int
        Also track this many frames before the first and after the last keyframe of each label.
    progress, cancel
        ``progress(done, total)`` and a ``threading.Event`` checked between frame pairs.
    labels : sequence of str, optional
        Label names, used in error messages only.
    single_keyframe : {"error", "skip"}
        What to do, when ``extend == 0``, with a label that has only one keyframe: raise, or
        return just its keyframe.
    method : {"robust", "dustrack"}
        See above (:data:`FILL_METHODS`).
    report : dict, optional
        Receives ``"flags"``: a :class:`.flow_confidence.Flags` (unreliable points, their
        frames, and problems with the video such as blank or frozen frames).

    Returns
    -------
    xy : ndarray (len(frames), L, 2)
        Keyframe rows unchanged; RSTC between keyframes; NaN outside each label's keyframe span
        (plus ``extend``) and where both tracks were lost.
    confidence : ndarray (len(frames), L)
        1 at keyframes, 0 where NaN, otherwise as described in the module docstring.

    Raises
    ------
    DustrackError
        Keyframes outside the video or the image, wrong shapes, a single keyframe (see above).
    FlowError
        A frame could not be decoded part-way (``partial`` holds the result computed before).
    Cancelled
        ``cancel`` was set; ``partial`` holds the result computed so far.
    """
    extend = int(extend)
    if extend < 0:
        raise DustrackError(f"extend must be >= 0, got {extend}")
    if single_keyframe not in ("error", "skip"):
        raise ValueError(f"single_keyframe must be 'error' or 'skip', not {single_keyframe!r}")
    n = _length(frames)
    keys = _check_keys(keys, n, labels, _path_of(frames))
    if extend == 0:
        counts = np.isfinite(keys).all(axis=2).sum(axis=0)
        single = np.flatnonzero(counts == 1)
        if len(single) and single_keyframe == "error":
            where = ", ".join(
                f"{_name(labels, i)} (frame {int(np.flatnonzero(np.isfinite(keys[:, i, 0]))[0])})"
                for i in single
            )
            raise DustrackError(
                f"label(s) with a single keyframe, nothing to fill between: {where}; add a "
                "second keyframe or track beyond it (extend, --extend N on the command line)"
            )
    if method not in FILL_METHODS:
        raise DustrackError(f"unknown fill method {method!r} (choose from "
                            f"{', '.join(FILL_METHODS)})")
    notes: list[str] = []
    if method == "dustrack":
        xy, conf = _run(frames, keys, params, extend, extend, progress, cancel, labels)
    else:
        from .robust_fill import ImageMotion, retrack

        motion = ImageMotion()  # measured during the forward visit: frames decoded once
        xy, conf = _run(frames, keys, params, extend, extend, progress, cancel, labels,
                        pair_hook=motion.measure)
        xy, conf, notes = retrack(frames, keys, xy, conf, motion, params, cancel, labels)
    if report is not None:
        from .flow_confidence import flag_summary

        report["flags"] = flag_summary(xy, conf, messages=notes)
    return xy, conf


def keys_from_table(table, n_frames: int, labels: Sequence[str] | None = None, path=None):
    """Keyframe array ``(n_frames, L, 2)`` and label list from a point table.

    Raises
    ------
    DustrackError
        Rows at frames ``>= n_frames``; labels not in ``labels`` (when given).
    """
    from ..io.table import labels_of, to_array

    table_labels = labels_of(table)
    if labels is not None:
        unknown = [lab for lab in table_labels if lab not in set(labels)]
        if unknown:
            raise DustrackError(f"unknown label(s) {unknown}; expected one of {list(labels)}", path)
    else:
        labels = table_labels
    outside = sorted(set(table.loc[table["frame"] >= n_frames, "frame"].astype(int)))
    if outside:
        shown = ", ".join(map(str, outside[:5])) + (" ..." if len(outside) > 5 else "")
        raise DustrackError(
            f"keyframe(s) at frame {shown} outside the video "
            f"({n_frames} frames: 0..{n_frames - 1})",
            path,
        )
    keys, labels = to_array(table, labels, n_frames)
    return keys, list(labels)


# ------------------------------------------------------------------------------------------
# input checks


def _length(frames) -> int:
    try:
        return len(frames)
    except TypeError:
        raise DustrackError("frames must support len() and indexing") from None


def _path_of(frames):
    return getattr(frames, "path", None)


def _name(labels, i: int) -> str:
    return repr(labels[i]) if labels is not None and i < len(labels) else f"#{i}"


def _check_keys(keys, n: int, labels, path) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.float64)
    if keys.ndim != 3 or keys.shape[2] != 2:
        raise DustrackError(f"keyframes must have shape (frames, labels, 2), got {keys.shape}")
    half = np.isfinite(keys).any(axis=2) & ~np.isfinite(keys).all(axis=2)
    if half.any():
        f, lab = np.argwhere(half)[0]
        raise DustrackError(
            f"keyframe of label {_name(labels, lab)} at frame {f} has a NaN coordinate")
    present = np.isfinite(keys).all(axis=2)
    if len(keys) > n and present[n:].any():
        bad = sorted(set(np.flatnonzero(present[n:].any(axis=1)) + n))
        raise DustrackError(
            f"keyframe(s) at frame {', '.join(map(str, bad[:5]))} outside the video "
            f"({n} frames: 0..{n - 1})",
            path,
        )
    out = np.full((n,) + keys.shape[1:], np.nan)
    out[: min(n, len(keys))] = keys[:n]
    return out


def _check_inside(keys: np.ndarray, shape: tuple[int, int], labels, path, offset=0) -> None:
    h, w = shape
    present = np.isfinite(keys).all(axis=2)
    x, y = keys[..., 0], keys[..., 1]
    # a pixel centre at 0 covers -0.5..0.5: anything within the image's pixels is fine
    outside = present & ((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5))
    if outside.any():
        f, lab = np.argwhere(outside)[0]
        raise DustrackError(
            f"{int(outside.sum())} keyframe point(s) outside the {w}x{h} image, first: label "
            f"{_name(labels, lab)} at frame {f + offset} (x={x[f, lab]:.1f}, "
            f"y={y[f, lab]:.1f})",
            path,
        )


# ------------------------------------------------------------------------------------------
# the engine


@dataclass
class _Plan:
    """Per-label ranges (frame indices) of the work; see the module docstring."""

    keys: np.ndarray  # (n, L, 2)
    is_key: np.ndarray  # (n, L)
    first: np.ndarray  # (L,) first keyframe, or -1 for labels without any
    last: np.ndarray  # (L,)
    lo: np.ndarray  # (L,) first frame reached (backward extension)
    hi: np.ndarray  # (L,) last frame reached (forward extension)
    active: np.ndarray  # (L,) has a keyframe
    prev_key: np.ndarray  # (n, L) last keyframe at or before each frame, -1 if none
    drift0: np.ndarray | None = None  # (L,) squared drift carried in at the keyframe
    drift_out: list | None = None
    _fwd_idx: list | None = None

    @classmethod
    def make(cls, keys: np.ndarray, ext_fwd: int, ext_bwd: int) -> "_Plan":
        n, n_labels = keys.shape[:2]
        is_key = np.isfinite(keys).all(axis=2)
        active = is_key.any(axis=0)
        first = np.where(active, np.argmax(is_key, axis=0), -1)
        last = np.where(active, n - 1 - np.argmax(is_key[::-1], axis=0), -1)
        lo = np.where(active, np.maximum(first - ext_bwd, 0), -1)
        hi = np.where(active, np.minimum(last + ext_fwd, n - 1), -1)
        frame_idx = np.where(is_key, np.arange(n)[:, None], -1)
        prev_key = np.maximum.accumulate(frame_idx, axis=0) if n else frame_idx
        return cls(keys, is_key, first, last, lo, hi, active, prev_key)

    @property
    def fwd_idx(self) -> list:
        """Per pair (u, u + 1), the labels whose forward track crosses it: None, a slice (all
        labels: basic indexing is cheaper in the inner loop) or an index array."""
        if self._fwd_idx is None:
            u = np.arange(len(self.keys))[:, None]
            mask = self.active & (self.first <= u) & (u < self.hi)
            self._fwd_idx = [None if not row.any() else slice(None) if row.all()
                             else np.flatnonzero(row) for row in mask]
        return self._fwd_idx

    def ready_top(self, f: int) -> np.ndarray:
        """Per label, the frame up to which backward work can run once frame ``f`` is visited."""
        top = np.where(
            f >= self.last,
            np.minimum(f, self.hi),
            np.where(f >= self.first, self.prev_key[f], self.lo),
        )
        return np.where(self.active, top, -1)

    def is_cut(self, f: int) -> bool:
        """True when no backward work behind ``f`` waits for a keyframe after ``f``."""
        waiting = self.active & (f > self.lo) & (f < self.last) & ~self.is_key[f]
        return not waiting.any()


@dataclass
class _State:
    """Tracks and their bookkeeping; NaN = lost or not computed (see ``done_*``)."""

    F: np.ndarray
    B: np.ndarray
    err_f: np.ndarray
    err_b: np.ndarray
    check_f: np.ndarray  # (n, L) check error of the forward step u -> u + 1 (extension)
    check_b: np.ndarray  # (n, L) check error of the backward step u + 1 -> u (extension)
    done_f: np.ndarray
    done_b: np.ndarray
    swept: np.ndarray  # (L,) backward work is done (or handed to a sweep) below this frame
    pairs_done: list = field(default_factory=lambda: [0, 0])  # forward, backward

    @classmethod
    def make(cls, plan: _Plan) -> "_State":
        n, n_labels = plan.is_key.shape
        nan2 = lambda: np.full((n, n_labels, 2), np.nan)  # noqa: E731
        nan1 = lambda: np.full((n, n_labels), np.nan)  # noqa: E731
        st = cls(nan2(), nan2(), nan1(), nan1(), nan1(), nan1(),
                 np.zeros((n, n_labels), bool), np.zeros((n, n_labels), bool), plan.lo.copy())
        # keyframes are their own track positions
        st.F[plan.is_key] = plan.keys[plan.is_key]
        st.B[plan.is_key] = plan.keys[plan.is_key]
        st.done_f |= plan.is_key
        st.done_b |= plan.is_key
        return st


def _run(frames, keys, params, ext_fwd, ext_bwd, progress, cancel, labels, cache_bytes=None,
         drift0=None, drift_out=None, pair_hook=None):
    """Forward visit + backward sweeps; returns ``(xy, confidence)`` for every frame.

    ``drift0`` (L,) is the squared drift already accumulated at each label's keyframe (when a
    long propagation is run in blocks); ``drift_out``, a list, receives the (n, L) squared drift
    of the extension frames; ``pair_hook(u, image_u, image_u+1)`` is called on every frame pair
    of the forward visit.
    """
    cache_bytes = CACHE_BYTES if cache_bytes is None else cache_bytes
    plan = _Plan.make(keys, ext_fwd, ext_bwd)
    plan.drift0 = np.zeros(keys.shape[1]) if drift0 is None else np.asarray(drift0, float)
    plan.drift_out = drift_out
    state = _State.make(plan)
    if not plan.active.any():
        return _combine(plan, state)
    path = _path_of(frames)
    offset = getattr(frames, "offset", 0)  # a FrameView numbers frames from its start
    start, stop = int(plan.lo[plan.active].min()), int(plan.hi[plan.active].max())
    total = _count_pairs(plan, start, stop)
    cache: dict[int, np.ndarray] = {}
    shape = None
    cached_bytes = 0
    worker = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="dustrack-sweep")
              if SWEEP_THREAD else None)
    pending = None
    stopped = threading.Event()  # tells the sweep to stop early (cancel or failure)

    def report():
        if progress is not None:
            progress(min(sum(state.pairs_done), total), total)

    def wait_pending():
        nonlocal pending
        if pending is not None:
            fut, pending = pending, None
            fut.result()

    def sweep(f, force=False):
        nonlocal pending
        top = plan.ready_top(f)
        todo = plan.active & (top > state.swept)
        if not todo.any():
            return
        if not force and int((top - state.swept)[todo].max()) < MIN_SWEEP and f < stop:
            return
        wait_pending()  # at most one sweep in flight: bounded memory
        lo_l, top_l = state.swept.copy(), top.copy()
        lo_frame = int(lo_l[todo].min())
        images = {i: cache[i] for i in range(lo_frame, int(top_l[todo].max()) + 1)}
        state.swept = np.where(todo, top, state.swept)
        if worker is None:
            _sweep(plan, state, images, todo, lo_l, top_l, params, stopped, cancel)
        else:
            pending = worker.submit(_sweep, plan, state, images, todo, lo_l, top_l, params,
                                    stopped, cancel)
        keep_from = min(f, int(state.swept[plan.active & (state.swept < plan.hi)].min(initial=f)))
        for i in [i for i in cache if i < keep_from]:
            del cache[i]

    failure = None
    f = start
    reader = read_ahead(frames, range(start, stop + 1), depth=PREFETCH)
    try:
        for f in range(start, stop + 1):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            img = _read(reader, f, path, shape, offset)
            if shape is None:
                shape = img.shape
                _check_inside(keys, shape, labels, path, offset)
            cache[f] = img
            cached_bytes += img.nbytes
            if f % 16 == 0:  # frames dropped by sweeps: recount now and then
                cached_bytes = sum(a.nbytes for a in cache.values())
            if f > start:
                _forward_step(plan, state, cache[f - 1], img, f - 1, params)
                if pair_hook is not None:  # e.g. the image-wide motion, on frames in hand
                    pair_hook(f - 1, cache[f - 1], img)
                state.pairs_done[0] += 1
            over = cached_bytes > cache_bytes
            if plan.is_cut(f):
                sweep(f, force=f == stop)
            elif over:
                sweep(f, force=True)
            report()
        wait_pending()
    except Cancelled:
        stopped.set()
        _drain(pending)
        raise Cancelled(_combine(plan, state)) from None
    except FlowError as exc:
        failure = exc
    except BaseException:
        stopped.set()
        _drain(pending)
        raise
    finally:
        reader.close()
        if worker is not None:
            worker.shutdown(wait=True)
    if failure is not None:
        # keep what can be finished with the frames already decoded
        _drain(pending)
        _finish_partial(plan, state, cache, f - 1, params, stopped, cancel)
        raise FlowError(failure.problem, failure.path, _combine(plan, state))
    report()
    return _combine(plan, state)


def _drain(pending) -> None:
    if pending is not None:
        try:
            pending.result()
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass


def _finish_partial(plan, state, cache, f, params, stopped, cancel) -> None:
    """After a decode failure at ``f + 1``: run the backward work that frame ``f`` makes ready."""
    if f < 0 or f not in cache:
        return
    top = plan.ready_top(f)
    todo = plan.active & (top > state.swept)
    if not todo.any():
        return
    lo_l = state.swept.copy()
    lo_frame = int(lo_l[todo].min())
    if any(i not in cache for i in range(lo_frame, int(top[todo].max()) + 1)):
        return
    _sweep(plan, state, cache, todo, lo_l, top, params, stopped, cancel)


def _count_pairs(plan: _Plan, start: int, stop: int) -> int:
    u = np.arange(start, stop)[:, None]
    act = plan.active[None, :]
    fwd = (act & (plan.first <= u) & (u < plan.hi)).any(axis=1).sum()
    bwd = (act & (plan.lo <= u) & (u < plan.hi)).any(axis=1).sum()
    return int(fwd + bwd)


def _read(reader, i: int, path, shape, offset: int = 0) -> np.ndarray:
    j = i + offset  # the frame number the user knows
    try:
        t, img = next(reader)
        if t != i:  # cannot happen: frames are consumed in the order they are read
            raise RuntimeError(f"read ahead out of order: wanted frame {i}, got {t}")
    except DustrackError as exc:
        raise FlowError(f"frame {j} could not be decoded ({exc.problem})",
                        exc.path or path) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear line
        raise FlowError(f"frame {j} could not be decoded ({type(exc).__name__}: {exc})",
                        path) from None
    if img.ndim != 2:
        raise FlowError(f"frame {j} is not a 2-D image (shape {img.shape})", path)
    if shape is not None and img.shape != shape:
        raise FlowError(f"frame {j} has shape {img.shape}, the others {shape}", path)
    return img


def _track(prev_img, next_img, points, params: LKParams):
    """:func:`~.lk.lk_track` on grayscale images, with less per-call overhead.

    Same results (a test pins this): NaN in, LK status 0 or a result outside the image gives
    NaN out with ``ok`` False and error ``inf``. This is the inner loop of the module, called
    once per frame pair and direction, hence the lean version.
    """
    if np.isnan(points).any():
        valid = ~np.isnan(points).any(axis=1)
        new = np.full(points.shape, np.nan)
        ok = np.zeros(len(points), bool)
        err = np.full(len(points), np.inf)
        if valid.any():
            new[valid], ok[valid], err[valid] = _track(prev_img, next_img, points[valid], params)
        return new, ok, err
    kwargs, limit = _lk_kwargs(params), _limits(prev_img.shape)
    new, status, error = cv2.calcOpticalFlowPyrLK(
        prev_img, next_img, points.astype(np.float32).reshape(-1, 1, 2), None, **kwargs)
    new = new.reshape(-1, 2).astype(np.float64)
    # comparisons with NaN are False, so this also drops non-finite results
    ok = (status.ravel() != 0) & ((new >= 0) & (new <= limit)).all(axis=1)
    new[~ok] = np.nan
    return new, ok, np.where(ok, error.ravel().astype(np.float64), np.inf)


@functools.lru_cache(maxsize=8)
def _lk_kwargs(params: LKParams) -> dict:
    return dict(winSize=(params.win_size, params.win_size), maxLevel=params.max_level,
                criteria=params.criteria)


@functools.lru_cache(maxsize=8)
def _limits(shape) -> np.ndarray:
    """Largest x and y inside an image of ``shape``: (w - 1, h - 1)."""
    return np.array([shape[1] - 1, shape[0] - 1], dtype=np.float64)


def _forward_step(plan, state, prev_img, next_img, u, params) -> None:
    """One LK call for every label whose forward track crosses (u, u + 1)."""
    labs = plan.fwd_idx[u]
    if labs is None:
        return
    # F holds the keyframe position at keyframes, so a track restarts there
    new, ok, err = _track(prev_img, next_img, state.F[u, labs], params)
    keep = plan.is_key[u + 1, labs]
    state.F[u + 1, labs] = np.where(keep[:, None], state.F[u + 1, labs], new)
    state.err_f[u + 1, labs] = err
    state.done_f[u + 1, labs] = True


def _sweep(plan, state, images, todo, lo_l, top_l, params, stopped, cancel) -> None:
    """Backward work for labels ``todo`` on pairs lo_l <= u < top_l, one LK call per pair."""
    labs_all = np.flatnonzero(todo)
    u_top = int(top_l[labs_all].max())
    u_lo = int(lo_l[labs_all].min())
    for u in range(u_top - 1, u_lo - 1, -1):
        if stopped.is_set() or (cancel is not None and cancel.is_set()):
            return
        labs = labs_all[(lo_l[labs_all] <= u) & (u < top_l[labs_all])]
        if not len(labs):
            continue
        _backward_step(plan, state, images[u + 1], images[u], u, labs, params)
        state.pairs_done[1] += 1


def _backward_step(plan, state, img_next, img_prev, u, labs, params) -> None:
    """Backward tracks (and extension checks) of ``labs`` on the pair u + 1 -> u."""
    before_last = u < plan.last[labs]
    track = labs[before_last]  # RSTC backward track and backward extension
    check = labs[~before_last]  # forward extension: check the forward step
    pts = state.B[u + 1, track]  # B holds the keyframe position at keyframes
    if len(check):
        pts = np.concatenate([pts, state.F[u + 1, check]])
    new, ok, err = _track(img_next, img_prev, pts, params)
    k = len(track)
    keep = plan.is_key[u, track]
    state.B[u, track] = np.where(keep[:, None], state.B[u, track], new[:k])
    state.err_b[u, track] = err[:k]
    state.done_b[u, track] = True
    if len(check):
        state.check_f[u, check] = _check_error(new[k:], ok[k:], state.F[u, check])
    # backward extension: check the step B(u + 1) -> B(u) by tracking B(u) forward again
    ext = track[u < plan.first[track]]
    if len(ext):
        fwd, ok2, _ = _track(img_prev, img_next, state.B[u, ext], params)
        state.check_b[u, ext] = _check_error(fwd, ok2, state.B[u + 1, ext])


def _check_error(tracked, ok, ref) -> np.ndarray:
    """|tracked - ref| where both exist; ``FB_SCALE`` where only the check was lost."""
    d = np.hypot(*(tracked - ref).T)
    return np.where(ok, d, np.where(np.isfinite(ref).all(axis=1), FB_SCALE, np.nan))


# ------------------------------------------------------------------------------------------
# combining tracks into positions and confidences


def _lk_factor(err) -> np.ndarray:
    err = np.asarray(err, dtype=np.float64)
    finite = np.isfinite(err)
    return np.where(finite, np.exp(-0.5 * (np.where(finite, err, 0.0) / ERR_SCALE) ** 2), 0.0)


def _combine(plan: _Plan, st: _State) -> tuple[np.ndarray, np.ndarray]:
    n, n_labels = plan.is_key.shape
    xy = np.full((n, n_labels, 2), np.nan)
    conf = np.zeros((n, n_labels))
    drift2 = np.full((n, n_labels), np.nan)
    for lab in np.flatnonzero(plan.active):
        _combine_rstc(plan, st, lab, xy, conf)
        _combine_extension(plan, st, lab, xy, conf, drift2)
        keyed = plan.is_key[:, lab]
        xy[keyed, lab] = plan.keys[keyed, lab]
        conf[keyed, lab] = 1.0
    lost = ~np.isfinite(xy).all(axis=2)
    xy[lost] = np.nan
    conf[lost] = 0.0
    if plan.drift_out is not None:
        plan.drift_out.append(drift2)
    return xy, np.clip(conf, 0.0, 1.0)


def _combine_rstc(plan, st, lab, xy, conf) -> None:
    key_frames = np.flatnonzero(plan.is_key[:, lab])
    for s, e in zip(key_frames[:-1], key_frames[1:]):
        if e - s < 2:
            continue
        t = np.arange(s + 1, e)
        w = rstc_weight(t, s, e, RSTC_EPS)
        F, B = st.F[t, lab], st.B[t, lab]
        done = st.done_f[t, lab] & st.done_b[t, lab]
        f_ok = np.isfinite(F).all(axis=1) & done
        b_ok = np.isfinite(B).all(axis=1) & done
        both = f_ok & b_ok
        blend = w[:, None] * F + (1 - w[:, None]) * B
        d_eff = np.hypot(*(F - B).T) * 4 * w * (1 - w)
        err = 0.5 * (st.err_f[t, lab] + st.err_b[t, lab])
        c_both = np.exp(-0.5 * (d_eff / FB_SCALE) ** 2) * _lk_factor(err)
        c_f = LOST_ONE_FACTOR * w * _lk_factor(st.err_f[t, lab])
        c_b = LOST_ONE_FACTOR * (1 - w) * _lk_factor(st.err_b[t, lab])
        single = np.where(f_ok[:, None], F, np.where(b_ok[:, None], B, np.nan))
        out = np.where(both[:, None], blend, single)
        c = np.where(both, c_both, np.where(f_ok, c_f, np.where(b_ok, c_b, 0.0)))
        xy[t, lab] = out
        conf[t, lab] = c


def _combine_extension(plan, st, lab, xy, conf, drift2) -> None:
    first, last, lo, hi = (int(a[lab]) for a in (plan.first, plan.last, plan.lo, plan.hi))
    d0 = 0.0 if plan.drift0 is None else float(plan.drift0[lab])
    drift2[first, lab] = d0 if first == last else np.nan
    if hi > last:  # forward extension: frames last+1..hi, steps last..hi-1
        t = np.arange(last + 1, hi + 1)
        d2 = d0 + np.cumsum(st.check_f[last:hi, lab] ** 2)  # NaN once a check is missing
        _extension_rows(st.F, st.done_f, st.err_f, t, lab, d2, xy, conf, drift2)
    if lo < first:  # backward extension: frames lo..first-1, steps first-1 down to lo
        t = np.arange(lo, first)
        d2 = d0 + np.cumsum(st.check_b[lo:first, lab][::-1] ** 2)[::-1]
        _extension_rows(st.B, st.done_b, st.err_b, t, lab, d2, xy, conf, drift2)


def _extension_rows(track, done, err, t, lab, d2, xy, conf, drift2) -> None:
    """Rows of a one-sided track, confidence from the accumulated squared drift ``d2``."""
    ok = done[t, lab] & np.isfinite(d2)
    c = np.exp(-0.5 * np.nan_to_num(d2) / FB_SCALE**2) * _lk_factor(err[t, lab])
    xy[t, lab] = np.where(ok[:, None], track[t, lab], np.nan)
    conf[t, lab] = np.where(ok, c, 0.0)
    drift2[t, lab] = np.where(ok, d2, np.nan)
