"""The LK + RSTC engine behind :mod:`.flow`: one forward visit of the frames, backward sweeps.

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
* A long backward :func:`.flow.propagate` calls this engine once per block of frames that fits
  the budget (``drift0``/``drift_out`` carry the check drift from one block to the next).
* Backward extension (``extend`` before the first keyframe) is checked by tracking each step
  forward again: a second forward-direction call on those pairs, the one exception to "one call
  per pair and direction".

Why no image pyramids are reused: OpenCV's Python binding of ``calcOpticalFlowPyrLK`` (4.11 and
5.0) rejects a pre-built pyramid (a list of arrays) for ``prevImg``/``nextImg`` ("Expected
Ptr<cv::UMat>"), so every call builds its two pyramids internally, exactly as a call on raw images
does. What is shared per frame is the decode and the grayscale conversion; the savings come from
batching every label and every keyframe segment into one call per pair and direction.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import Cancelled, DustrackError
from ._flow_combine import FB_SCALE, combine
from ._frames import read_ahead
from .lk import LKParams

CACHE_BYTES = 512 * 2**20  # frames kept for backward sweeps before a forced sweep
MIN_SWEEP = 8  # pairs: smaller sweeps are merged into the next one
PREFETCH = 8  # frames decoded ahead by a reader thread (0: read in the tracking thread)
# Backward sweeps run beside the forward visit in a second thread when there are cores to spare
# (OpenCV's LK already spreads its points over two threads; on two cores a second sweep thread
# only contends).
SWEEP_THREAD = (os.cpu_count() or 1) > 2


class FlowError(DustrackError):
    """A failure part-way through (e.g. an undecodable frame), carrying what was computed before.

    ``partial`` is ``(xy, confidence)`` in the shape of the function's normal result.
    """

    def __init__(self, problem: str, path=None, partial=None):
        super().__init__(problem, path)
        self.partial = partial


def path_of(frames):
    return getattr(frames, "path", None)


def label_name(labels, i: int) -> str:
    return repr(labels[i]) if labels is not None and i < len(labels) else f"#{i}"


def check_inside(keys: np.ndarray, shape: tuple[int, int], labels, path, offset=0) -> None:
    h, w = shape
    present = np.isfinite(keys).all(axis=2)
    x, y = keys[..., 0], keys[..., 1]
    # a pixel centre at 0 covers -0.5..0.5: anything within the image's pixels is fine
    outside = present & ((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5))
    if outside.any():
        f, lab = np.argwhere(outside)[0]
        raise DustrackError(
            f"{int(outside.sum())} keyframe point(s) outside the {w}x{h} image, first: label "
            f"{label_name(labels, lab)} at frame {f + offset} (x={x[f, lab]:.1f}, "
            f"y={y[f, lab]:.1f})",
            path,
        )


@dataclass
class Plan:
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
    error_out: list | None = None  # receives the estimated error (n, L), see ._flow_combine
    _fwd_idx: list | None = None

    @classmethod
    def make(cls, keys: np.ndarray, ext_fwd: int, ext_bwd: int) -> Plan:
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
            self._fwd_idx = [
                None if not row.any() else slice(None) if row.all() else np.flatnonzero(row)
                for row in mask
            ]
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
class Tracks:
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
    def make(cls, plan: Plan) -> Tracks:
        n, n_labels = plan.is_key.shape
        nan2 = lambda: np.full((n, n_labels, 2), np.nan)  # noqa: E731
        nan1 = lambda: np.full((n, n_labels), np.nan)  # noqa: E731
        st = cls(
            nan2(),
            nan2(),
            nan1(),
            nan1(),
            nan1(),
            nan1(),
            np.zeros((n, n_labels), bool),
            np.zeros((n, n_labels), bool),
            plan.lo.copy(),
        )
        # keyframes are their own track positions
        st.F[plan.is_key] = plan.keys[plan.is_key]
        st.B[plan.is_key] = plan.keys[plan.is_key]
        st.done_f |= plan.is_key
        st.done_b |= plan.is_key
        return st


def run(
    frames,
    keys,
    params,
    ext_fwd,
    ext_bwd,
    progress,
    cancel,
    labels,
    cache_bytes=None,
    drift0=None,
    drift_out=None,
    pair_hook=None,
    error_out=None,
):
    """Forward visit + backward sweeps; returns ``(xy, confidence)`` for every frame.

    ``drift0`` (L,) is the squared drift already accumulated at each label's keyframe (when a
    long propagation is run in blocks); ``drift_out``, a list, receives the (n, L) squared drift
    of the extension frames; ``pair_hook(u, image_u, image_u+1)`` is called on every frame pair
    of the forward visit; ``error_out``, a list, receives the (n, L) estimated error of the
    points between keyframes (:mod:`._flow_combine`).
    """
    cache_bytes = CACHE_BYTES if cache_bytes is None else cache_bytes
    plan = Plan.make(keys, ext_fwd, ext_bwd)
    plan.drift0 = np.zeros(keys.shape[1]) if drift0 is None else np.asarray(drift0, float)
    plan.drift_out = drift_out
    plan.error_out = error_out
    state = Tracks.make(plan)
    if not plan.active.any():
        return combine(plan, state)
    visit = _Visit(plan, state, params, cancel, progress, cache_bytes)
    start, stop = visit.start, visit.stop
    failure = None
    reader = read_ahead(frames, range(start, stop + 1), depth=PREFETCH)
    try:
        visit.forward(reader, frames, keys, labels, pair_hook)
    except Cancelled:
        visit.abandon()
        raise Cancelled(combine(plan, state)) from None
    except FlowError as exc:
        failure = exc
    except BaseException:
        visit.abandon()
        raise
    finally:
        reader.close()
        if visit.worker is not None:
            visit.worker.shutdown(wait=True)
    if failure is not None:
        # keep what can be finished with the frames already decoded
        _drain(visit.pending)
        _finish_partial(plan, state, visit.cache, visit.f - 1, params, visit.stopped, cancel)
        raise FlowError(failure.problem, failure.path, combine(plan, state))
    visit.report()
    return combine(plan, state)


class _Visit:
    """One forward visit of the frames: the frames in hand (for the backward sweeps) and the
    sweep in flight (at most one, in a worker thread when ``SWEEP_THREAD``)."""

    def __init__(self, plan: Plan, state: Tracks, params, cancel, progress, cache_bytes):
        self.plan, self.state, self.params = plan, state, params
        self.cancel, self.progress, self.cache_bytes = cancel, progress, cache_bytes
        self.start = int(plan.lo[plan.active].min())
        self.stop = int(plan.hi[plan.active].max())
        self.total = _count_pairs(plan, self.start, self.stop)
        self.cache: dict[int, np.ndarray] = {}
        self.cached_bytes = 0
        self.f = self.start  # the frame being visited
        self.worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="dustrack-sweep")
            if SWEEP_THREAD
            else None
        )
        self.pending = None
        self.stopped = threading.Event()  # tells the sweep to stop early (cancel or failure)

    def forward(self, reader, frames, keys, labels, pair_hook) -> None:
        """Decode each frame, track the pair it closes, sweep back where a cut (or the memory
        budget) allows; waits for the last sweep."""
        plan, state, cache = self.plan, self.state, self.cache
        path = path_of(frames)
        offset = getattr(frames, "offset", 0)  # a FrameView numbers frames from its start
        shape = None
        for f in range(self.start, self.stop + 1):
            self.f = f
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled()
            img = _read(reader, f, path, shape, offset)
            if shape is None:
                shape = img.shape
                check_inside(keys, shape, labels, path, offset)
            self._keep(f, img)
            if f > self.start:
                _forward_step(plan, state, cache[f - 1], img, f - 1, self.params)
                if pair_hook is not None:  # e.g. the image-wide motion, on frames in hand
                    pair_hook(f - 1, cache[f - 1], img)
                state.pairs_done[0] += 1
            over = self.cached_bytes > self.cache_bytes
            if plan.is_cut(f):
                self.sweep(f, force=f == self.stop)
            elif over:
                self.sweep(f, force=True)
            self.report()
        self.wait_pending()

    def _keep(self, f: int, img: np.ndarray) -> None:
        self.cache[f] = img
        self.cached_bytes += img.nbytes
        if f % 16 == 0:  # frames dropped by sweeps: recount now and then
            self.cached_bytes = sum(a.nbytes for a in self.cache.values())

    def report(self) -> None:
        if self.progress is not None:
            self.progress(min(sum(self.state.pairs_done), self.total), self.total)

    def wait_pending(self) -> None:
        if self.pending is not None:
            fut, self.pending = self.pending, None
            fut.result()

    def abandon(self) -> None:
        """Stop the sweep in flight (cancel or failure) and wait for it to end."""
        self.stopped.set()
        _drain(self.pending)

    def sweep(self, f: int, force: bool = False) -> None:
        """Run the backward tracks that frame ``f`` makes ready, then drop the frames no
        backward track needs any more. Small sweeps wait (unless ``force``)."""
        plan, state, cache = self.plan, self.state, self.cache
        top = plan.ready_top(f)
        todo = plan.active & (top > state.swept)
        if not todo.any():
            return
        if not force and int((top - state.swept)[todo].max()) < MIN_SWEEP and f < self.stop:
            return
        self.wait_pending()  # at most one sweep in flight: bounded memory
        lo_l, top_l = state.swept.copy(), top.copy()
        lo_frame = int(lo_l[todo].min())
        images = {i: cache[i] for i in range(lo_frame, int(top_l[todo].max()) + 1)}
        state.swept = np.where(todo, top, state.swept)
        args = (plan, state, images, todo, lo_l, top_l, self.params, self.stopped, self.cancel)
        if self.worker is None:
            _sweep(*args)
        else:
            self.pending = self.worker.submit(_sweep, *args)
        keep_from = min(f, int(state.swept[plan.active & (state.swept < plan.hi)].min(initial=f)))
        for i in [i for i in cache if i < keep_from]:
            del cache[i]


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


def _count_pairs(plan: Plan, start: int, stop: int) -> int:
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
        raise FlowError(
            f"frame {j} could not be decoded ({exc.problem})", exc.path or path
        ) from None
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear line
        raise FlowError(
            f"frame {j} could not be decoded ({type(exc).__name__}: {exc})", path
        ) from None
    if img.ndim != 2:
        raise FlowError(f"frame {j} is not a 2-D image (shape {img.shape})", path)
    if shape is not None and img.shape != shape:
        raise FlowError(f"frame {j} has shape {img.shape}, the others {shape}", path)
    return img


def track_pair(prev_img, next_img, points, params: LKParams):
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
            new[valid], ok[valid], err[valid] = track_pair(
                prev_img, next_img, points[valid], params
            )
        return new, ok, err
    kwargs, limit = _lk_kwargs(params), _limits(prev_img.shape)
    new, status, error = cv2.calcOpticalFlowPyrLK(
        prev_img, next_img, points.astype(np.float32).reshape(-1, 1, 2), None, **kwargs
    )
    new = new.reshape(-1, 2).astype(np.float64)
    # comparisons with NaN are False, so this also drops non-finite results
    ok = (status.ravel() != 0) & ((new >= 0) & (new <= limit)).all(axis=1)
    new[~ok] = np.nan
    return new, ok, np.where(ok, error.ravel().astype(np.float64), np.inf)


@functools.lru_cache(maxsize=8)
def _lk_kwargs(params: LKParams) -> dict:
    return dict(
        winSize=(params.win_size, params.win_size),
        maxLevel=params.max_level,
        criteria=params.criteria,
    )


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
    new, ok, err = track_pair(prev_img, next_img, state.F[u, labs], params)
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
    new, ok, err = track_pair(img_next, img_prev, pts, params)
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
        fwd, ok2, _ = track_pair(img_prev, img_next, state.B[u, ext], params)
        state.check_b[u, ext] = _check_error(fwd, ok2, state.B[u + 1, ext])


def _check_error(tracked, ok, ref) -> np.ndarray:
    """|tracked - ref| where both exist; ``FB_SCALE`` where only the check was lost."""
    d = np.hypot(*(tracked - ref).T)
    return np.where(ok, d, np.where(np.isfinite(ref).all(axis=1), FB_SCALE, np.nan))
