"""Pyramidal Lucas-Kanade primitives shared by propagation, smoothing and review.

LK treats every point independently, so tracking many points (many labels, many keyframe
segments, many smoother windows) in one call gives the same result as one call per point.
OpenCV's Python binding does not accept pre-built pyramids, so each call builds the pyramids of
its two images; what callers share per frame is the decode and the grayscale conversion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from ..io.pixels import to_gray_u8  # the one grey rule; re-exported for the trackers

__all__ = ["LKParams", "lk_track", "rstc_weight", "to_gray_u8"]


@dataclass(frozen=True)
class LKParams:
    """Parameters of ``cv2.calcOpticalFlowPyrLK`` (defaults as DUSTrack).

    Attributes
    ----------
    win_size : int
        Side of the square search window at each pyramid level (pixels).
    max_level : int
        Number of pyramid levels above the full-resolution image.
    max_iter, eps : int, float
        Stop iterating after ``max_iter`` iterations or when the update is below ``eps``.
    """

    win_size: int = 45
    max_level: int = 2
    max_iter: int = 10
    eps: float = 0.03

    @property
    def criteria(self) -> tuple[int, int, float]:
        return (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, self.max_iter, self.eps)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lk_track(prev, nxt, points: np.ndarray, params: LKParams = LKParams()):
    """Track ``points`` (n, 2) of (x, y) from ``prev`` to ``nxt``.

    ``prev``/``nxt`` are frames (converted with :func:`to_gray_u8`). Returns
    ``(new_points (n, 2), ok (n,) bool, error (n,))``; points that are NaN on input, lost by LK
    or outside the image come back NaN with ``ok`` False.
    """
    points = np.asarray(points, dtype=np.float32).reshape(-1, 2)
    out = np.full(points.shape, np.nan, dtype=np.float64)
    ok = np.zeros(len(points), dtype=bool)
    err = np.full(len(points), np.inf)
    valid = np.isfinite(points).all(axis=1)
    if not valid.any():
        return out, ok, err
    prev_img, next_img = to_gray_u8(prev), to_gray_u8(nxt)
    new, status, error = cv2.calcOpticalFlowPyrLK(
        prev_img,
        next_img,
        np.ascontiguousarray(points[valid].reshape(-1, 1, 2)),
        None,
        winSize=(params.win_size, params.win_size),
        maxLevel=params.max_level,
        criteria=params.criteria,
    )
    new = new.reshape(-1, 2).astype(np.float64)
    h, w = prev_img.shape[:2]
    inside = (new[:, 0] >= 0) & (new[:, 0] <= w - 1) & (new[:, 1] >= 0) & (new[:, 1] <= h - 1)
    good = status.reshape(-1).astype(bool) & inside & np.isfinite(new).all(axis=1)
    idx = np.flatnonzero(valid)
    out[idx[good]] = new[good]
    ok[idx] = good
    err[idx] = np.where(good, error.reshape(-1), np.inf)
    return out, ok, err


def rstc_weight(t, start: float, end: float, eps: float = 0.01) -> np.ndarray:
    """Weight of the forward track in the reverse-sigmoid tracking correction (RSTC).

    ``w(t) = (sigma(t) - 1/2) / (1 - 2 eps) + 1/2`` with ``sigma(t) = 1 / (1 + exp(b (t - c)))``,
    ``b = 2 ln(1/eps - 1) / (end - start)``, ``c = (start + end) / 2``, so ``w(start) = 1`` and
    ``w(end) = 0`` exactly. The blended path is ``w F + (1 - w) B``.
    """
    t = np.asarray(t, dtype=np.float64)
    b = 2.0 * np.log(1.0 / eps - 1.0) / (end - start)
    c = 0.5 * (start + end)
    sigma = 1.0 / (1.0 + np.exp(b * (t - c)))
    return (sigma - 0.5) / (1.0 - 2.0 * eps) + 0.5
