"""Local optical-flow motion fields: a small grid of LK points around each label.

``fast`` and ``fusion`` never track the window paths themselves. For every pair of
consecutive frames they track a small grid around each label's reference position forwards
and read the motion of any point near the label by bilinear interpolation of the grid's
displacements (the motion back from t+1 to t is its negative). The image work per frame is
then a fixed number of LK points per label, whatever the window length. Tracking backwards
too, for a forward-backward check, was tried and dropped: on the simulated cines LK's forward
and backward errors are almost the same error (the speckle's apparent motion), so the check
cost a second LK call per frame pair and bought 1 % of RMSE.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..lk import LKParams
from ..modes import SmoothMode
from .crops import lk_groups, quiet_nan
from .scale import auto_shrink, to_shrunk


@dataclass(frozen=True)
class Grid:
    """The LK sample grid around a label: ``n`` x ``n`` points ``spacing`` pixels apart.

    ``shrink`` > 1 runs LK on the frames shrunk by that integer factor (:mod:`.scale`);
    spacing and displacements stay in full-size pixels. ``mean`` averages the grid into one
    displacement per label (the motion of its centre, exact for affine motion of a symmetric
    grid) instead of keeping every point for interpolation.
    """

    n: int = 1
    spacing: float = 8.0
    shrink: int = 1
    mean: bool = False

    @property
    def n_fields(self) -> int:
        """Displacements per label in a field: 1 when averaged, else ``n * n``."""
        return 1 if self.mean else self.n**2

    def offsets(self) -> np.ndarray:
        """(n*n, 2) offsets (x, y) from the centre, row-major (y outer, x inner)."""
        return _offsets(self.n, self.spacing)


@lru_cache(maxsize=16)
def _offsets(n: int, spacing: float) -> np.ndarray:
    half = (n - 1) / 2
    ticks = (np.arange(n) - half) * spacing
    yy, xx = np.meshgrid(ticks, ticks, indexing="ij")
    out = np.stack([xx.ravel(), yy.ravel()], axis=1)
    out.flags.writeable = False  # shared between calls
    return out


def auto_grid(frames, mode: str, grid: Grid | None = None) -> Grid:
    """``grid`` when given, else the default of ``mode`` at the speckle's scale of ``frames``.

    ``fast`` moves a label with one LK point. ``fusion`` averages four (a 2 x 2 square 12 px
    wide at LK's scale): LK's error is mostly the speckle's own apparent motion, so points
    12 px apart err partly independently, and on the simulated cines the average cuts the
    error per frame by ~10 % for about twice the LK work of one point (the pyramids each LK
    call builds are shared by its points).
    """
    if grid is not None:
        return grid
    shrink = auto_shrink(frames)
    if mode == SmoothMode.FUSION:
        return Grid(2, 12.0 * shrink, shrink, mean=True)
    return Grid(shrink=shrink)


def reference_positions(xy: np.ndarray, size: int = 5) -> np.ndarray:
    """Where each label's grid sits: a running median of the input (robust to one outlier).

    NaN frames stay NaN; at a frame next to a gap the median uses the finite neighbours only.
    """
    ref = np.array(xy, dtype=np.float64, copy=True)
    n = len(xy)
    half = size // 2
    finite = np.isfinite(xy).all(axis=2)
    # nan-aware median over a short window: pad with NaN, stack shifted copies
    padded = np.full((n + 2 * half,) + xy.shape[1:], np.nan)
    padded[half : half + n] = xy
    stack = np.stack([padded[i : i + n] for i in range(size)])
    with np.errstate(all="ignore"), quiet_nan():
        med = np.nanmedian(stack, axis=0)
    ref[finite] = med[finite]
    return ref


def _fill_lost(disp: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Replace lost grid displacements by the median of the label's good ones (NaN if none)."""
    if ok.all():
        return disp
    disp = np.where(ok[..., None], disp, np.nan)
    with quiet_nan():
        med = np.nanmedian(disp, axis=1, keepdims=True)
    return np.where(ok[..., None], disp, med)


def pair_fields(
    prev, nxt, ref: np.ndarray, params: LKParams = LKParams(), grid: Grid = Grid()
) -> np.ndarray:
    """Grid displacements from frame t to t+1.

    Parameters
    ----------
    prev, nxt : 2-D arrays
        Frames t and t+1, shrunk by ``grid.shrink`` (:func:`.scale.shrink_frame`).
    ref : (L, 2)
        Grid centres at t (full-size pixels); NaN labels are skipped.

    Returns
    -------
    (L, G, 2) float32
        Displacement t -> t+1 of each grid point (``G = grid.n_fields``), in full-size
        pixels; lost grid points take the median of the label's others, all-lost labels NaN.
    """
    pts = to_shrunk(ref[:, None, :] + grid.offsets()[None], grid.shrink)
    groups = [p if np.isfinite(p).all() else np.full_like(p, np.nan) for p in pts]
    new, ok = lk_groups(prev, nxt, groups, params)
    disp = _fill_lost((np.stack(new) - pts) * grid.shrink, np.stack(ok))
    if grid.mean:
        disp = disp.mean(axis=1, keepdims=True)
    return disp.astype(np.float32)


def interpolate(field: np.ndarray, rel: np.ndarray, grid: Grid = Grid()) -> np.ndarray:
    """Displacement at points ``rel`` (..., L, 2) relative to each label's grid centre.

    ``field`` is (L, G, 2) with ``G = grid.n_fields`` (one displacement per label moves every
    point alike). Bilinear inside the grid, the edge value outside it (clamped); NaN where
    ``rel`` is NaN.
    """
    n = 1 if field.shape[1] == 1 else grid.n
    f = field.reshape(field.shape[0], n, n, 2).astype(np.float64)
    missing = ~np.isfinite(rel).all(axis=-1)
    u = np.clip(np.nan_to_num(rel / grid.spacing) + (n - 1) / 2, 0, n - 1)
    i0 = np.minimum(np.floor(u).astype(int), n - 2) if n > 1 else np.zeros(u.shape, int)
    a = u - i0 if n > 1 else np.zeros(u.shape)
    ix, iy = i0[..., 0], i0[..., 1]
    ax, ay = a[..., 0:1], a[..., 1:2]
    lab = np.broadcast_to(np.arange(field.shape[0]), ix.shape)
    if n == 1:
        return np.where(missing[..., None], np.nan, f[lab, 0, 0])
    v00 = f[lab, iy, ix]
    v01 = f[lab, iy, ix + 1]
    v10 = f[lab, iy + 1, ix]
    v11 = f[lab, iy + 1, ix + 1]
    out = (1 - ay) * ((1 - ax) * v00 + ax * v01) + ay * ((1 - ax) * v10 + ax * v11)
    return np.where(missing[..., None], np.nan, out)
