"""The windowed RSTC average (DUSTrack's ``lk_moving_average_filter``), computed pair by pair.

For every window start ``s`` a path runs forwards from the input at ``s`` and another
backwards from the input at ``e = s + W - 1``; they are blended with the RSTC weights and the
output at frame ``t`` is the mean of the blended paths of all windows covering ``t``. The
blend is linear, so the forward and the backward contributions are summed in two passes and
no path is ever stored: the forward pass visits the pairs ``t -> t+1`` in increasing order,
moving the points of every active window in one step, and the backward pass visits
``t+1 -> t`` in decreasing order. Memory is O(W x labels) for the paths.

``dustrack`` steps the points with LK on the frames; ``fast`` steps them with the local motion
fields of :mod:`.motion` (a fixed LK cost per label and frame pair).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ...errors import raise_if_cancelled
from .._frames import read_ahead
from ..lk import LKParams, rstc_weight
from .crops import lk_groups
from .motion import Grid, interpolate

RSTC_EPS = 0.01  # DUSTrack's epsilon in the window blend

Step = Callable[[int, np.ndarray], np.ndarray]


def blend_weights(window: int, eps: float = RSTC_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward RSTC weights at offsets ``0 .. window-1`` inside a window."""
    k = np.arange(window)
    return rstc_weight(k, 0, window - 1, eps), rstc_weight(window - 1 - k, 0, window - 1, eps)


def valid_windows(xy: np.ndarray, window: int) -> np.ndarray:
    """(N - W + 1, L) bool: the input is finite on every frame of window ``s`` for label ``l``.

    A gap (NaN frame) splits the track: no window spans it.
    """
    finite = np.isfinite(xy).all(axis=2)
    bad = np.concatenate([np.zeros((1, xy.shape[1]), int), np.cumsum(~finite, axis=0)])
    return (bad[window:] - bad[:-window]) == 0


def accumulate(
    xy: np.ndarray,
    window: int,
    s0: int,
    s1: int,
    step_fwd: Step,
    step_bwd: Step,
    tick: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the blended paths of windows ``s0 <= s < s1`` and how many cover each frame.

    Parameters
    ----------
    xy : (N, L, 2)
        The input (whole track); window ends are read from it.
    step_fwd, step_bwd : callables
        ``step_fwd(t, pts (m, L, 2))`` -> positions at ``t + 1``; ``step_bwd(t, pts)`` ->
        positions at ``t`` of points given at ``t + 1``.
    tick : callable, optional
        Called once per frame visited (2 per frame: forward and backward pass).

    Returns
    -------
    sums : (n, L, 2) and counts : (n, L) for frames ``s0 .. s1 + W - 2`` (n = s1 - s0 + W - 1).
    """
    n_lab = xy.shape[1]
    n = s1 - s0 + window - 1
    wf, wb = blend_weights(window)
    valid = valid_windows(xy[s0 : s0 + n], window)[: s1 - s0]
    sums = np.zeros((n, n_lab, 2))
    counts = np.zeros((n, n_lab), dtype=np.int64)
    # positions are single precision, as OpenCV's LK returns them (DUSTrack keeps that too)
    start = np.where(valid[..., None], xy[s0:s1].astype(np.float32), np.nan).astype(np.float64)
    ends = np.where(
        valid[..., None], xy[s0 + window - 1 : s1 + window - 1].astype(np.float32), np.nan
    ).astype(np.float64)

    paths = np.full((s1 - s0, n_lab, 2), np.nan)
    for t in range(s0, s1 + window - 1):  # forward pass
        if t < s1:
            paths[t - s0] = start[t - s0]
        lo, hi = max(s0, t - window + 1), min(s1 - 1, t)
        k = t - np.arange(lo, hi + 1)
        sel = paths[lo - s0 : hi - s0 + 1]
        sums[t - s0] += np.nansum(wf[k, None, None] * sel, axis=0)
        counts[t - s0] += valid[lo - s0 : hi - s0 + 1].sum(axis=0)
        lo_next = max(s0, t - window + 2)
        if t < s1 + window - 2 and lo_next <= hi:
            paths[lo_next - s0 : hi - s0 + 1] = step_fwd(t, paths[lo_next - s0 : hi - s0 + 1])
        if tick:
            tick()

    paths[:] = np.nan
    for t in range(s1 + window - 2, s0 - 1, -1):  # backward pass
        s_new = t - window + 1
        if s0 <= s_new < s1:
            paths[s_new - s0] = ends[s_new - s0]
        lo, hi = max(s0, t - window + 1), min(s1 - 1, t)
        k = t - np.arange(lo, hi + 1)
        sums[t - s0] += np.nansum(wb[k, None, None] * paths[lo - s0 : hi - s0 + 1], axis=0)
        hi_prev = min(s1 - 1, t - 1)
        if t > s0 and lo <= hi_prev:
            paths[lo - s0 : hi_prev - s0 + 1] = step_bwd(t - 1, paths[lo - s0 : hi_prev - s0 + 1])
        if tick:
            tick()
    return sums, counts


def accumulate_translation(xy: np.ndarray, window: int, disp: np.ndarray):
    """:func:`accumulate` for all windows when each label moves as a whole between frames.

    With ``disp[t]`` (L, 2) the motion t -> t+1 (the same for every point of the label, and
    its negative backwards), the forward path of window ``s`` is ``xy[s] + D(t) - D(s)`` and the
    backward one ``xy[e] - D(e) + D(t)`` with ``D`` the cumulated motion, so the blended sum
    over windows is ``count(t) D(t)`` plus a weighted sum over ``W`` shifts: O(W) array
    operations instead of a loop over frames.
    """
    n, n_lab = xy.shape[:2]
    n_win = n - window + 1
    wf, wb = blend_weights(window)
    valid = valid_windows(xy, window)
    cum = np.concatenate([np.zeros((1, n_lab, 2)), np.cumsum(disp, axis=0)])
    x32 = xy.astype(np.float32).astype(np.float64)
    a = np.where(valid[..., None], x32[:n_win] - cum[:n_win], 0.0)
    c = np.where(valid[..., None], x32[window - 1 :] - cum[window - 1 :], 0.0)
    sums = np.zeros((n, n_lab, 2))
    counts = np.zeros((n, n_lab), dtype=np.int64)
    for k in range(window):  # frame t = s + k
        sums[k : k + n_win] += wf[k] * a + wb[k] * c
        counts[k : k + n_win] += valid
    sums += counts[..., None] * cum
    return sums, counts


def lk_steppers(frames: dict[int, np.ndarray], params: LKParams, exact: bool = True):
    """Steppers that move window points with LK on the frames (``dustrack`` mode)."""

    def run(a: int, b: int, pts: np.ndarray) -> np.ndarray:
        groups = [pts[:, lab] for lab in range(pts.shape[1])]
        new, _ = lk_groups(frames[a], frames[b], groups, params, exact=exact)
        # lost points keep LK's output, as DUSTrack does; only NaN input stays NaN
        return np.stack(new, axis=1)

    return (lambda t, pts: run(t, t + 1, pts)), (lambda t, pts: run(t + 1, t, pts))


def field_steppers(fields: np.ndarray, ref: np.ndarray, grid: Grid):
    """Steppers that move window points with the interpolated grid fields (``fast`` mode).

    ``fields[t]`` holds the (L, G, 2) motion t -> t+1 of the grid around ``ref[t]``. Backwards,
    a point at t+1 goes to where that motion brings it from (one fixed-point step, exact for a
    one-point grid). A label whose grid was lost on a pair moves with its reference positions
    instead (zero if those are missing too).
    """

    def motion(t, pts):
        d = interpolate(fields[t], pts - ref[t][None], grid)
        return np.where(np.isfinite(d), d, np.nan_to_num(ref[t + 1] - ref[t])[None])

    def step_fwd(t, pts):
        return pts + motion(t, pts)

    def step_bwd(t, pts):
        guess = pts - np.nan_to_num(ref[t + 1] - ref[t])[None]
        return pts - motion(t, guess)

    return step_fwd, step_bwd


def finish(xy: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The window average; frames no window covers keep the input (NaN stays NaN)."""
    out = np.array(xy, dtype=np.float64, copy=True)
    covered = counts > 0
    out[covered] = sums[covered] / counts[covered][:, None]
    return out


class _Lazy(dict):
    """Frames by index, pulled from an in-order reader the first time each is asked for."""

    def __init__(self, reader, known: dict):
        super().__init__(known)
        self.reader = reader

    def __missing__(self, t):
        for i, img in self.reader:
            self[i] = img
            if i == t:
                return img
        raise KeyError(t)


def dustrack_chunk(
    frames,
    xy: np.ndarray,
    window: int,
    s0: int,
    s1: int,
    params: LKParams = LKParams(),
    cache: dict | None = None,
    progress: Callable[[int], None] | None = None,
    cancel=None,
):
    """Window sums for starts ``s0 <= s < s1`` by LK on the frames (``dustrack`` mode).

    The chunk's frames (``s0 .. s1 + W - 2``) are decoded once, in order, ahead of the forward
    pass, and kept as grayscale for the backward pass; ``cache`` (frame -> gray image) lets a
    sequential caller hand the overlap with the previous chunk over instead of decoding it
    again. Returns ``(sums, counts, cache for the next chunk)``.
    """
    stop = s1 + window - 1
    known = {t: img for t, img in (cache or {}).items() if s0 <= t < stop}
    reader = read_ahead(frames, [t for t in range(s0, stop) if t not in known])
    imgs = _Lazy(reader, known)
    fwd, bwd = lk_steppers(imgs, params)

    def tick():
        raise_if_cancelled(cancel)
        if progress:
            progress(1)

    try:
        sums, counts = accumulate(xy, window, s0, s1, fwd, bwd, tick)
    finally:
        reader.close()
    return sums, counts, {t: imgs[t] for t in range(max(s0, s1), stop)}
