"""Image-free smoothers to compare against: Savitzky-Golay and a constant-velocity Kalman/RTS.

They see only the track, so they trade jitter for lag or for flattened fast motion; the
benchmark reports them next to the optical-flow modes. Gaps (NaN) split the track.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import savgol_filter


def segments(finite: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of the runs of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], finite.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=False))


def _per_segment(xy: np.ndarray, fn) -> np.ndarray:
    out = np.array(xy, dtype=np.float64, copy=True)
    for lab in range(xy.shape[1]):
        for a, b in segments(np.isfinite(xy[:, lab]).all(axis=1)):
            out[a:b, lab] = fn(xy[a:b, lab].astype(np.float64))
    return out


def savgol(xy: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay filter of each label and coordinate (window forced odd, > order)."""

    def fn(z):
        w = min(window | 1, len(z) if len(z) % 2 else len(z) - 1)
        if w <= order:
            return z
        return savgol_filter(z, w, order, axis=0, mode="interp")

    return _per_segment(xy, fn)


def _noise_levels(z: np.ndarray) -> tuple[float, float]:
    """Measurement variance from the MAD of second differences; acceleration variance from
    what the second differences hold beyond that noise."""
    d2 = np.diff(z, 2, axis=0).ravel()
    if len(d2) < 4:
        return 1.0, 1.0
    mad = 1.4826 * np.median(np.abs(d2 - np.median(d2)))
    r = max((mad / np.sqrt(6.0)) ** 2, 1e-4)
    q = max(np.var(d2) - 6 * r, 0.05 * r)
    return r, q


def kalman_rts(xy: np.ndarray, r: float | None = None, q: float | None = None) -> np.ndarray:
    """Constant-velocity Kalman filter + Rauch-Tung-Striebel smoother, per label and axis.

    ``r`` (measurement variance, px^2) and ``q`` (white-acceleration variance) are estimated
    from the track when not given.
    """

    def fn(z):
        rr, qq = _noise_levels(z)
        rr = rr if r is None else r
        qq = qq if q is None else q
        return np.stack([_rts_1d(z[:, i], rr, qq) for i in range(z.shape[1])], axis=1)

    return _per_segment(xy, fn)


def _rts_1d(z: np.ndarray, r: float, q: float) -> np.ndarray:
    n = len(z)
    F = np.array([[1.0, 1.0], [0.0, 1.0]])
    Q = q * np.array([[0.25, 0.5], [0.5, 1.0]])
    xs = np.zeros((n, 2))
    Ps = np.zeros((n, 2, 2))
    xp = np.zeros((n, 2))
    Pp = np.zeros((n, 2, 2))
    x = np.array([z[0], 0.0])
    P = np.diag([r, 10.0 * r + 1.0])
    for t in range(n):
        if t:
            x = F @ x
            P = F @ P @ F.T + Q
        xp[t], Pp[t] = x, P
        k = P[:, 0] / (P[0, 0] + r)
        x = x + k * (z[t] - x[0])
        P = P - np.outer(k, P[0])
        xs[t], Ps[t] = x, P
    for t in range(n - 2, -1, -1):
        G = Ps[t] @ F.T @ np.linalg.inv(Pp[t + 1])
        xs[t] = xs[t] + G @ (xs[t + 1] - xp[t + 1])
        Ps[t] = Ps[t] + G @ (Ps[t + 1] - Pp[t + 1]) @ G.T
    return xs[:, 0]
