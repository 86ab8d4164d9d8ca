"""Frames most worth a look after a prediction.

Two signs that the model is wrong on a frame: it is unsure (low confidence), or it disagrees
with the motion of the image: tracking the model's points of the previous and the next frame
into this frame with Lucas-Kanade should land near the model's point here. The residual of the
model against those two optical-flow estimates is large at a jump the image does not show.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from ..errors import raise_if_cancelled
from ..io.sources import PointSource
from ..io.table import labels_of, to_array, validate
from .flow_confidence import FLAG_BELOW
from .lk import LKParams, lk_track, to_gray_u8

COLUMNS = ("frame", "score", "confidence", "residual_px", "label", "reason")


def flow_residuals(
    frames,
    xy: np.ndarray,
    params: LKParams = LKParams(),
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Residual (pixels) of each point against LK from its neighbours' points.

    Parameters
    ----------
    frames : sequence of 2-D arrays
        Visited once, in order. (OpenCV's Python binding cannot reuse a built pyramid, so
        each LK call builds its own.)
    xy : ndarray (N, L, 2)
        Model positions, NaN where there is none.

    Returns
    -------
    ndarray (N, L)
        Mean distance of ``xy[t]`` from LK(t-1 -> t) of ``xy[t-1]`` and LK(t+1 -> t) of
        ``xy[t+1]``; NaN where neither estimate exists.
    """
    n = len(xy)
    res = np.full(xy.shape[:2], np.nan)
    if n < 2:
        return res
    prev, cur, nxt = None, to_gray_u8(frames[0]), to_gray_u8(frames[1])
    for t in range(n):
        raise_if_cancelled(cancel, res)
        dists = []
        if prev is not None:
            fwd, _, _ = lk_track(prev, cur, xy[t - 1], params)
            dists.append(np.linalg.norm(xy[t] - fwd, axis=-1))
        if nxt is not None:
            bwd, _, _ = lk_track(nxt, cur, xy[t + 1], params)
            dists.append(np.linalg.norm(xy[t] - bwd, axis=-1))
        stack = np.stack(dists)
        finite = np.isfinite(stack)
        count = finite.sum(axis=0)
        res[t] = np.where(
            count > 0, np.where(finite, stack, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan
        )
        prev, cur = cur, nxt
        nxt = to_gray_u8(frames[t + 2]) if t + 2 < n else None
        if progress:
            progress(t + 1, n)
    return res


def rank_frames(
    confidence: np.ndarray,
    residual: np.ndarray,
    labels: list[str],
    top: int = 20,
    tolerance_px: float = 2.0,
    min_gap: int = 2,
    exclude: Iterable[int] = (),
    *,
    flow_confidence: np.ndarray | None = None,
) -> pd.DataFrame:
    """Rank frames by ``max(1 - confidence, residual / (residual + tolerance_px))``.

    The worst label of a frame decides its score. Frames within ``min_gap`` of a better-ranked
    frame are skipped (one correction fixes a neighbourhood), as are ``exclude`` frames (those
    already curated). Points whose optical flow (``flow_confidence`` (N, L), e.g. the keyframe
    fill's) was unreliable score above every other point: the model was likely trained on them
    and a person must look first.
    """
    with np.errstate(invalid="ignore"):
        c_term = 1.0 - np.nan_to_num(confidence, nan=0.0)
        r = np.nan_to_num(residual, nan=0.0)
        r_term = r / (r + tolerance_px)
    per_point = np.maximum(c_term, r_term)
    f_conf = None
    if flow_confidence is not None:
        f_conf = np.asarray(flow_confidence, float)
        bad = np.isfinite(f_conf) & (f_conf < FLAG_BELOW)
        per_point = np.where(bad, 2.0 - np.nan_to_num(f_conf), per_point)
    score = per_point.max(axis=1) if per_point.size else np.zeros(len(confidence))
    excluded = set(int(f) for f in exclude)
    rows, taken = [], []
    for f in np.argsort(-score, kind="stable"):
        if len(rows) >= top:
            break
        if int(f) in excluded or any(abs(int(f) - g) <= min_gap for g in taken):
            continue
        taken.append(int(f))
        lab = int(np.argmax(per_point[f]))
        by_conf = c_term[f, lab] >= r_term[f, lab]
        reason = (
            f"low confidence {1 - c_term[f, lab]:.2f} for {labels[lab]}"
            if by_conf
            else f"model and optical flow differ by {r[f, lab]:.1f} px for {labels[lab]}"
        )
        if per_point[f, lab] > 1.0:
            reason = f"optical flow unreliable (confidence {f_conf[f, lab]:.2f}) for {labels[lab]}"
        rows.append(
            (
                int(f),
                float(score[f]),
                float(1 - c_term[f].max()),
                float(r[f].max()),
                labels[lab],
                reason,
            )
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def frames_to_review(
    frames,
    table: pd.DataFrame,
    top: int = 20,
    params: LKParams = LKParams(),
    tolerance_px: float = 2.0,
    min_gap: int = 2,
    exclude: Iterable[int] = (),
    progress=None,
    cancel=None,
    *,
    flow: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The frames of a prediction most worth reviewing, best first.

    Parameters
    ----------
    frames : sequence of 2-D arrays
    table : point table
        The model's prediction (``confidence`` column; missing points count as confidence 0).
    flow : point table, optional
        The keyframe fill (rows with source ``flow`` and a confidence): frames where it was
        unreliable come first.

    Returns
    -------
    DataFrame
        Columns ``frame, score, confidence, residual_px, label, reason``.
    """
    table = validate(table)
    labels = labels_of(table)
    n = len(frames)
    xy, _ = to_array(table, labels, n)
    conf, _ = to_array(table, labels, n, column="confidence")
    residual = flow_residuals(frames, xy, params, progress, cancel)
    f_conf = None
    if flow is not None:
        rows = flow[flow["source"] == PointSource.FLOW]
        rows = rows[rows["label"].isin(labels)]
        f_conf, _ = to_array(rows, labels, n, column="confidence")
    return rank_frames(
        conf, residual, labels, top, tolerance_px, min_gap, exclude, flow_confidence=f_conf
    )
