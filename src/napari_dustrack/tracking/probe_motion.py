"""Image-wide motion between two frames: how far the probe slid over the tissue.

A grid of pyramidal Lucas-Kanade vectors covers the image; their median is the image-wide
shift, and a robust (RANSAC) affine fit of them the image-wide motion, so that a shearing muscle
is followed as well as a sliding probe. Probe-fixed patterns (an acoustic shadow column,
reverberation bands) cover a minority of the grid, so they pull single vectors to zero but
neither the median nor the fit. A pair is *unreliable* when
too few vectors survive (blank or featureless frames) or when they scatter widely (no common
motion); a *frozen* pair (two identical frames: a duplicated or stalled frame) is reported too,
as its zero motion says nothing about the tissue.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

GRID_STEP = 48  # pixels between grid vectors (at 256 px: 25 vectors)
GRID_WIN = 15  # LK window of the grid vectors
GRID_LEVELS = 2  # pyramid levels: reach ~4x the window's half-width (28 px per frame)
MIN_VECTORS = 0.4  # share of grid vectors that must survive for a reliable estimate
MAX_SPREAD = 3.0  # px: vectors this close to their median support it
_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)


@dataclass
class PairMotion:
    """Image-wide motion of one frame pair.

    Attributes
    ----------
    shift : ndarray (2,)
        Median (dx, dy) in pixels (0 where unreliable).
    ok : bool
        Enough vectors agree.
    frozen : bool
        The two frames are identical.
    support : float
        Share of grid vectors within ``MAX_SPREAD`` of the median.
    affine : ndarray (2, 3) or None
        Robust (RANSAC) affine fit of the grid vectors: the image-wide motion where the tissue
        also shears or stretches (a contracting muscle) rather than only translating.
    """

    shift: np.ndarray
    ok: bool
    frozen: bool
    support: float
    vectors: tuple | None = None  # (grid points, their new positions) for the affine fit
    _affine: np.ndarray | None = None
    _fitted: bool = False

    @property
    def affine(self) -> np.ndarray | None:
        """The affine fit, computed when first needed (only tracks in slides use it)."""
        if not self._fitted:
            self._affine = None if self.vectors is None else _affine(*self.vectors)
            self._fitted = True
        return self._affine

    def predict(self, points: np.ndarray) -> np.ndarray:
        """Where the image-wide motion takes ``points`` (L, 2)."""
        points = np.asarray(points, float)
        aff = self.affine
        if aff is None:
            return points + self.shift
        return points @ aff[:, :2].T + aff[:, 2]

    def inverse(self) -> PairMotion:
        """The same motion backwards (from the second frame to the first)."""
        aff = self.affine
        inv = PairMotion(-self.shift, self.ok, self.frozen, self.support)
        inv._affine = None if aff is None else cv2.invertAffineTransform(aff)
        inv._fitted = True
        return inv


@functools.lru_cache(maxsize=8)
def grid_points(shape: tuple[int, int], step: int = GRID_STEP) -> np.ndarray:
    """Grid of (x, y) points over an image of ``shape``, a margin of ``GRID_WIN`` inside."""
    h, w = shape
    step = int(max(8, min(step, max(h, w) // 3)))
    margin = GRID_WIN // 2 + 2
    ys = np.arange(margin, h - margin, step) if h > 2 * margin else [h / 2]
    xs = np.arange(margin, w - margin, step) if w > 2 * margin else [w / 2]
    gx, gy = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))
    out = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    out.flags.writeable = False  # shared by every call (cached)
    return out


def pair_motion(prev: np.ndarray, nxt: np.ndarray, points: np.ndarray | None = None) -> PairMotion:
    """Image-wide motion from ``prev`` to ``nxt`` (grayscale uint8 images)."""
    if points is None:
        points = grid_points(tuple(prev.shape))
    if prev.shape == nxt.shape and not np.any(cv2.absdiff(prev, nxt)):
        return PairMotion(np.zeros(2), False, True, 0.0)
    new, status, _ = cv2.calcOpticalFlowPyrLK(
        prev,
        nxt,
        points.reshape(-1, 1, 2),
        None,
        winSize=(GRID_WIN, GRID_WIN),
        maxLevel=GRID_LEVELS,
        criteria=_CRITERIA,
    )
    d = (new.reshape(-1, 2) - points)[status.ravel() > 0]
    d = d[np.isfinite(d).all(axis=1)]
    if len(d) < max(3, MIN_VECTORS * len(points)):
        return PairMotion(np.zeros(2), False, False, len(d) / max(len(points), 1))
    med = np.median(d, axis=0)
    near = np.hypot(*(d - med).T) <= MAX_SPREAD
    support = float(near.sum()) / len(points)
    ok = support >= MIN_VECTORS and _texture(prev) and _texture(nxt)
    if not ok:
        return PairMotion(np.zeros(2), False, False, support)
    good = (status.ravel() > 0) & np.isfinite(new.reshape(-1, 2)).all(axis=1)
    return PairMotion(
        med.astype(np.float64), True, False, support, (points[good], new.reshape(-1, 2)[good])
    )


def _affine(points, new) -> np.ndarray | None:
    """RANSAC affine fit of grid vectors ``points -> new`` (None with too few of them)."""
    if len(points) < 6:
        return None
    aff, inliers = cv2.estimateAffine2D(points, new, ransacReprojThreshold=1.0)
    if aff is None or inliers is None or inliers.sum() < max(6, MIN_VECTORS * len(points)):
        return None
    return aff.astype(np.float64)


def degenerate(prev: np.ndarray, nxt: np.ndarray) -> bool:
    """A pair that says nothing about motion: identical (frozen) or blank frames (cheap test,
    for every pair)."""
    return bool(not np.any(cv2.absdiff(prev, nxt)) or not _texture(prev) or not _texture(nxt))


def _texture(img: np.ndarray) -> bool:
    """False for blank (near-uniform) frames, where any motion estimate is noise."""
    return float(np.std(img[::8, ::8])) > 2.0
