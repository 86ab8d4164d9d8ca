"""Plot helpers without a plotting library: thinning long series for a figure a few hundred
pixels wide, and finding isolated values (a line alone cannot show them)."""

from __future__ import annotations

import numpy as np


def envelope(
    t: np.ndarray, y: np.ndarray, *, max_points: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` of ``(t, y)``: the minimum and maximum of each bin, in time order.

    Spikes survive (unlike taking every k-th value); NaN gaps survive as NaN bins.
    """
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    n = len(y)
    if n <= max_points:
        return t, y
    k = int(np.ceil(n / (max_points // 2)))
    m = n // k * k
    yb, tb = y[:m].reshape(-1, k), t[:m].reshape(-1, k)
    finite = np.isfinite(yb)
    safe_lo = np.where(finite, yb, np.inf)
    safe_hi = np.where(finite, yb, -np.inf)
    i_lo, i_hi = safe_lo.argmin(axis=1), safe_hi.argmax(axis=1)
    rows = np.arange(len(yb))
    first, second = np.minimum(i_lo, i_hi), np.maximum(i_lo, i_hi)
    out_t = np.c_[tb[rows, first], tb[rows, second]].ravel()
    out_y = np.c_[yb[rows, first], yb[rows, second]].ravel()
    empty = np.repeat(~finite.any(axis=1), 2)
    out_y[empty] = np.nan
    return np.r_[out_t, t[m:]], np.r_[out_y, y[m:]]


def isolated(y: np.ndarray) -> np.ndarray:
    """Mask of finite values whose neighbours are both missing (NaN or past the ends)."""
    ok = np.isfinite(np.asarray(y, dtype=float))
    before = np.r_[False, ok[:-1]]
    after = np.r_[ok[1:], False]
    return ok & ~before & ~after
