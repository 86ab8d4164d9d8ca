"""Optical-flow propagation and keyframe interpolation (LK + reverse-sigmoid tracking correction).

:func:`fill_between` fills the frames between consecutive keyframes of every label with RSTC
(Magana-Salgado et al. 2023): a forward Lucas-Kanade track ``F`` from the earlier keyframe and a
backward track ``B`` from the later one, blended with :func:`~.lk.rstc_weight` so that the result
passes exactly through both keyframes. :func:`propagate` tracks points from one frame forward or
backward. Both run on the same engine:

* :mod:`._flow_engine` decodes the frames once, in order, and runs every label's forward and
  backward LK tracks in one call per frame pair and direction (its docstring says how).
* :mod:`._flow_combine` blends the tracks into positions and a confidence (0..1; its docstring
  documents the choices).
* This module checks the input, runs a long backward :func:`propagate` in blocks of frames that
  fit the engine's cache (top block first, each block read in increasing order), and holds
  :func:`step_points`, the one-step LK move with a forward-backward check used when the user
  steps through a video.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import Cancelled, DustrackError
from . import _flow_engine as _engine
from . import flow_confidence as fc
from ._flow_combine import ERR_SCALE, FB_SCALE, LOST_ONE_FACTOR, RSTC_EPS  # noqa: F401
from ._flow_engine import FlowError, label_name, path_of, run
from ._frames import FrameView
from .lk import LKParams, lk_track
from .modes import FILL_METHODS, FillMethod

__all__ = [
    "FILL_METHODS",
    "FlowError",
    "fill_between",
    "keys_from_table",
    "propagate",
    "step_points",
]

MIN_BLOCK = 16  # frames: shortest block of a long backward propagation

Progress = Callable[[int, int], Any]


# ------------------------------------------------------------------------------------------
# public API


def propagate(
    frames,
    start_frame: int,
    xy: np.ndarray,
    n_steps: int,
    *,
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
        raise DustrackError(
            f"start frame {start_frame} is outside the video (frames 0..{n - 1})", path_of(frames)
        )
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
                wxy, wconf = run(
                    FrameView.window(frames, start_frame, stop),
                    win_keys,
                    params,
                    n_steps,
                    0,
                    progress,
                    cancel,
                    None,
                )
            except (Cancelled, FlowError) as exc:
                exc.partial = _unwindow(*exc.partial, keys.shape, start_frame)
                raise
            full = _unwindow(wxy, wconf, keys.shape, start_frame)
        else:
            full = _propagate_backward(
                frames, keys, start_frame, -n_steps, params, progress, cancel
            )
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
    block = max(MIN_BLOCK, _engine.CACHE_BYTES // max(_frame_bytes(frames, start), 1))
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
            bxy, bconf = run(
                FrameView.window(frames, top - b, top + 1),
                block_keys,
                params,
                0,
                b,
                block_progress,
                cancel,
                None,
                drift0=drift2,
                drift_out=drift_out,
            )
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
    *,
    params: LKParams = LKParams(),
    extend: int = 0,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    labels: Sequence[str] | None = None,
    single_keyframe: str = "error",
    method: str = FillMethod.ROBUST,
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
    method : FillMethod or its value, {"robust", "dustrack"}
        See above (:data:`FILL_METHODS`).
    report : dict, optional
        Receives ``"flags"``: a :class:`.flow_confidence.Flags` (points likely wrong, their
        frames, and problems with the video such as blank or frozen frames), and ``"error"``:
        the estimated error (N, L, px; NaN where not estimated) behind them.

    Returns
    -------
    xy : ndarray (len(frames), L, 2)
        Keyframe rows unchanged; RSTC between keyframes; NaN outside each label's keyframe span
        (plus ``extend``) and where both tracks were lost.
    confidence : ndarray (len(frames), L)
        1 at keyframes, 0 where NaN, otherwise as described in the module docstring, then
        calibrated (:func:`.flow_confidence.calibrate`): below ``FLAG_BELOW`` exactly where
        the point is flagged as likely wrong.

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
    keys = _check_keys(keys, n, labels, path_of(frames))
    if extend == 0:
        counts = np.isfinite(keys).all(axis=2).sum(axis=0)
        single = np.flatnonzero(counts == 1)
        if len(single) and single_keyframe == "error":
            first = np.argmax(np.isfinite(keys[:, single, 0]), axis=0)  # the one keyframe
            where = ", ".join(
                f"{label_name(labels, i)} (frame {int(f)})"
                for i, f in zip(single, first, strict=False)
            )
            raise DustrackError(
                f"label(s) with a single keyframe, nothing to fill between: {where}; add a "
                "second keyframe or track beyond it (parameter extend)"
            )
    if method not in FILL_METHODS:
        raise DustrackError(
            f"unknown fill method {method!r} (choose from {', '.join(FILL_METHODS)})"
        )
    notes: list[str] = []
    error_out: list = []  # estimated error of the points between keyframes (px)
    if method == FillMethod.DUSTRACK:
        xy, conf = run(
            frames, keys, params, extend, extend, progress, cancel, labels, error_out=error_out
        )
        error = error_out[-1]
    else:
        from .robust_fill import ImageMotion, retrack

        motion = ImageMotion()  # measured during the forward visit: frames decoded once
        xy, conf = run(
            frames,
            keys,
            params,
            extend,
            extend,
            progress,
            cancel,
            labels,
            pair_hook=motion.measure,
            error_out=error_out,
        )
        xy, conf, error, notes = retrack(
            frames, keys, xy, conf, motion, params, cancel, labels, error_out[-1]
        )
    conf = fc.calibrate(conf, error)  # a confidence below FLAG_BELOW now means likely wrong
    if report is not None:
        report["flags"] = fc.flag_summary(xy, conf, messages=notes)
        report["error"] = error
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


def step_points(
    prev, nxt, xy: np.ndarray, *, params: LKParams = LKParams()
) -> tuple[np.ndarray, np.ndarray]:
    """Move points one step from frame ``prev`` to frame ``nxt``, checked by tracking back.

    The step of step-and-adjust annotation: one LK call forward, one back from the result.
    The confidence is ``exp(-d**2 / (2 FB_SCALE**2))`` of the forward-backward distance ``d``
    (the check of :func:`propagate` for one step, without the LK residual factor).

    Parameters
    ----------
    prev, nxt : 2-D arrays
        The two frames (grey levels; see :func:`~napari_dustrack.io.pixels.to_gray_u8`).
    xy : ndarray (L, 2)
        (x, y) on ``prev``; NaN rows are not tracked.
    params : LKParams
        Lucas-Kanade parameters.

    Returns
    -------
    xy : ndarray (L, 2)
        (x, y) on ``nxt``; NaN where LK lost the point or it left the image.
    confidence : ndarray (L,)
        0..1; 0 where either the step or its check was lost.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    moved, ok, _ = lk_track(prev, nxt, xy, params)
    back, ok_back, _ = lk_track(nxt, prev, moved, params)
    fb = np.nan_to_num(np.linalg.norm(back - xy, axis=1), nan=np.inf)
    return moved, np.where(ok & ok_back, np.exp(-(fb**2) / (2 * FB_SCALE**2)), 0.0)


# ------------------------------------------------------------------------------------------
# input checks


def _length(frames) -> int:
    try:
        return len(frames)
    except TypeError:
        raise DustrackError("frames must support len() and indexing") from None


def _check_keys(keys, n: int, labels, path) -> np.ndarray:
    keys = np.asarray(keys, dtype=np.float64)
    if keys.ndim != 3 or keys.shape[2] != 2:
        raise DustrackError(f"keyframes must have shape (frames, labels, 2), got {keys.shape}")
    half = np.isfinite(keys).any(axis=2) & ~np.isfinite(keys).all(axis=2)
    if half.any():
        f, lab = np.argwhere(half)[0]
        raise DustrackError(
            f"keyframe of label {label_name(labels, lab)} at frame {f} has a NaN coordinate"
        )
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
