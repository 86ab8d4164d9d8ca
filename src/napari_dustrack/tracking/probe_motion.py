"""Image-wide motion between two frames: how far the probe slid over the tissue.

A grid of pyramidal Lucas-Kanade vectors covers the image; their median is the image-wide
shift. Probe-fixed patterns (an acoustic shadow column, reverberation bands) cover a minority of
the grid, so they pull single vectors to zero but not the median.

Where the image slides (median above ``REFINE_PX`` per frame), LK's vectors fall short of the
motion: the speckle decorrelates as the probe moves out of plane and a probe-fixed pattern in a
window holds it back, and a gradient method's estimate shrinks towards zero with both (on the
simulator's decorrelated probe slide, the median fell 0.5 px per frame short, 3-5 px over a
slide). There each grid vector is measured again by block matching: the vector's patch of the
first frame is found in the second by normalised cross-correlation near the LK median, whose
peak stays where the patterns match however much of them renewed. The median of these is the
shift (0.2 px per frame off on that cine instead of 0.5). A robust (RANSAC) affine fit of the
vectors follows a shearing or stretching image; it is used only where it explains the vectors
clearly better than the shift alone (``AFFINE_GAIN``), since over a rigid slide its extra
parameters fit the vectors' noise and extrapolate it to the image's edges. Where the LK vectors
scatter too widely to agree (a slide at 10 px per frame with a third of the speckle renewed),
phase correlation of the two frames gives the shift, checked by the same block matching.

A pair is *unreliable* when too few vectors survive (blank or featureless frames) or when they
scatter widely (no common motion); a *frozen* pair (two identical frames: a duplicated or
stalled frame) is reported too, as its zero motion says nothing about the tissue.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .flow_confidence import match_template, templates

GRID_STEP = 48  # pixels between grid vectors (at 256 px: 25 vectors)
GRID_WIN = 15  # LK window of the grid vectors
GRID_LEVELS = 2  # pyramid levels: reach ~4x the window's half-width (28 px per frame)
MIN_VECTORS = 0.4  # share of grid vectors that must survive for a reliable estimate
MAX_SPREAD = 3.0  # px: vectors this close to their median support it
REFINE_PX = 2.0  # px/frame: motion above this is measured again by block matching
MATCH_HALF = 15  # px: half-width of a grid vector's patch in block matching
MATCH_SEARCH = 4  # px: block matching searches this far around the LK median
MATCH_NCC = 0.3  # a block match weaker than this is left out (no common pattern)
AFFINE_GAIN = 0.7  # the affine fit is used when its median residual is below this share of
# the shift's (a true shear or stretch; a rigid slide's affine fits noise)
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
        Robust (RANSAC) affine fit of the grid vectors where it explains them clearly better
        than ``shift`` (the tissue also shears or stretches, a contracting muscle, rather than
        only translating); None otherwise, and ``predict`` then adds ``shift``.
    """

    shift: np.ndarray
    ok: bool
    frozen: bool
    support: float
    vectors: tuple | None = None  # (grid points, their new positions) for the affine fit
    matched: bool = False  # the vectors were measured again by block matching (a slide)
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
        inv = PairMotion(-self.shift, self.ok, self.frozen, self.support, matched=self.matched)
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
    if not (_texture(prev) and _texture(nxt)):
        return PairMotion(np.zeros(2), False, False, support)
    if support < MIN_VECTORS:  # no common LK motion: a slide too fast for the pyramid?
        return _correlated(prev, nxt, points, support)
    good = (status.ravel() > 0) & np.isfinite(new.reshape(-1, 2)).all(axis=1)
    pts, moved = points[good], new.reshape(-1, 2)[good]
    refined = _block_matched(prev, nxt, points, med) if np.hypot(*med) > REFINE_PX else None
    if refined is not None:
        med, pts, moved = refined
    return PairMotion(
        med.astype(np.float64), True, False, support, (pts, moved), matched=refined is not None
    )


def _correlated(prev, nxt, points, support) -> PairMotion:
    """The motion of a pair whose LK vectors scatter, from phase correlation of the whole
    frames, checked by block matching the grid around it; unreliable where they disagree.

    At 10 px per frame with a third of the speckle renewed, LK's pyramid loses most grid
    points, while the frames' correlation still peaks at the common shift (a probe-fixed
    pattern, a minority of the image, makes a lesser peak at zero)."""
    a, b = prev.astype(np.float32), nxt.astype(np.float32)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, _hanning(tuple(prev.shape)))
    refined = None
    if np.hypot(dx, dy) > REFINE_PX:
        refined = _block_matched(prev, nxt, points, np.array([dx, dy]))
    if refined is None:
        return PairMotion(np.zeros(2), False, False, support)
    med, pts, moved = refined
    agree = float((np.hypot(*(moved - pts - med).T) <= MAX_SPREAD).sum()) / len(points)
    if agree < MIN_VECTORS:
        return PairMotion(np.zeros(2), False, False, support)
    return PairMotion(med, True, False, agree, (pts, moved), matched=True)


@functools.lru_cache(maxsize=4)
def _hanning(shape: tuple[int, int]) -> np.ndarray:
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


def _block_matched(prev, nxt, points, shift):
    """(median shift, points, their new positions) of the grid measured again by block
    matching near ``shift``; None where too few patches match."""
    found = np.full((len(points), 2), np.nan)
    for k, (p, tmpl) in enumerate(zip(points, templates(prev, points, MATCH_HALF), strict=True)):
        pos, ncc, off = match_template(nxt, p + shift, tmpl, MATCH_SEARCH)
        if ncc >= MATCH_NCC and max(abs(off[0]), abs(off[1])) < MATCH_SEARCH:
            found[k] = pos  # a peak on the search's border may lie farther off: left out
    ok = np.isfinite(found).all(axis=1)
    if ok.sum() < max(3, MIN_VECTORS * len(points)):
        return None
    return np.median(found[ok] - points[ok], axis=0), points[ok], found[ok]


def _affine(points, new) -> np.ndarray | None:
    """RANSAC affine fit of grid vectors ``points -> new`` (None with too few of them)."""
    if len(points) < 6:
        return None
    aff, inliers = cv2.estimateAffine2D(points, new, ransacReprojThreshold=1.0)
    if aff is None or inliers is None or inliers.sum() < max(6, MIN_VECTORS * len(points)):
        return None
    d = new - points
    rigid = np.median(np.hypot(*(d - np.median(d, axis=0)).T))
    fitted = np.median(np.hypot(*(points @ aff[:, :2].T + aff[:, 2] - new).T))
    return aff.astype(np.float64) if fitted < AFFINE_GAIN * rigid else None


def degenerate(prev: np.ndarray, nxt: np.ndarray) -> bool:
    """A pair that says nothing about motion: identical (frozen) or blank frames (cheap test,
    for every pair)."""
    return bool(not np.any(cv2.absdiff(prev, nxt)) or not _texture(prev) or not _texture(nxt))


def _texture(img: np.ndarray) -> bool:
    """False for blank (near-uniform) frames, where any motion estimate is noise."""
    return float(np.std(img[::8, ::8])) > 2.0
