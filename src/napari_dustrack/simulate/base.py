"""Building blocks of a simulated scene: smooth random fields, striated texture, scatterer
populations, and the base class whose geometry, motion and acoustics each scenario sets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

REFERENCE_SIZE = 256  # geometry below is given for a 256-pixel image


def smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def random_field(rng, bounds, cell: float, lo: float, hi: float) -> Callable:
    """A smooth random function of material coordinates with values in ``lo..hi``.

    Random values on a grid of pitch ``cell``, interpolated (cubic) to a 4x finer grid once,
    then looked up bilinearly (cheap enough to call for every renewed scatterer).
    """
    x0, x1, y0, y1 = bounds
    coarse = rng.uniform(lo, hi, (int((y1 - y0) / cell) + 3, int((x1 - x0) / cell) + 3))
    fine = np.clip(ndimage.zoom(coarse, 4, order=3, mode="nearest", grid_mode=False), lo, hi)
    step = cell / 4.0 * (coarse.shape[1] - 1) / (fine.shape[1] - 1)
    step_y = cell / 4.0 * (coarse.shape[0] - 1) / (fine.shape[0] - 1)
    ny, nx = fine.shape

    def f(X, Y):
        u = np.clip((np.asarray(X) - x0) / step, 0, nx - 1.001)
        v = np.clip((np.asarray(Y) - y0) / step_y, 0, ny - 1.001)
        i, j = v.astype(np.intp), u.astype(np.intp)
        fv, fu = v - i, u - j
        top = fine[i, j] * (1 - fu) + fine[i, j + 1] * fu
        bottom = fine[i + 1, j] * (1 - fu) + fine[i + 1, j + 1] * fu
        return top * (1 - fv) + bottom * fv

    return f


def ridges(d: np.ndarray, centres: np.ndarray, heights: np.ndarray, width: float) -> np.ndarray:
    """Sum of the two nearest Gaussian ridges at sorted ``centres`` (striated texture)."""
    k = np.clip(np.searchsorted(centres, d), 1, len(centres) - 1)
    out = np.zeros_like(d)
    for j in (k - 1, k):
        out += heights[j] * np.exp(-0.5 * ((d - centres[j]) / width) ** 2)
    return out


def ridge_positions(rng, lo, hi, spacing, fixed=None):
    """Random ridge positions with spacing in ``spacing`` (one of them at ``fixed``)."""
    start = lo if fixed is None else fixed - spacing[1] * math.ceil((fixed - lo) / spacing[1])
    pos = [start]
    while pos[-1] < hi:
        pos.append(pos[-1] + rng.uniform(*spacing))
    pos = np.asarray(pos)
    if fixed is not None:  # shift so that one ridge sits exactly on `fixed`
        pos += fixed - pos[np.argmin(np.abs(pos - fixed))]
    return pos


@dataclass
class Population:
    """Scatterers of one kind: relative density (0..1) and echo amplitude over material space."""

    density: Callable
    echo: Callable
    per_cell: float  # scatterers per PSF resolution cell where density == 1
    renew: float  # share renewed per frame
    kind: str = "tissue"
    accept: float = 1.0  # acceptance rate of rejection sampling (measured on the first draw)


class Scene:
    """Base class: geometry, motion and acoustics of one scenario (pixels of the output)."""

    name = ""
    fps = 50.0
    default_frames = 250
    spacing_mm = 0.2  # pixel spacing at REFERENCE_SIZE
    f_mhz = 5.0  # pulse centre frequency
    psf_axial_mm = 0.2  # sigma of the envelope along depth
    psf_lateral_mm = (0.4, 0.7)  # sigma across the beam at the focus and far from it
    focus = 0.5  # focal depth as a fraction of the image height
    atten_db = 20.0  # round-trip attenuation over the image depth
    tgc_db = 16.0  # gain applied against it
    noise_db = -42.0  # receive noise relative to tissue echo
    dynamic_range_db = 50.0
    gain_db = 0.0

    def __init__(self, shape, n_frames, rng):
        self.shape = tuple(int(s) for s in shape)
        self.n_frames = n_frames
        self.g = min(self.shape) / REFERENCE_SIZE
        self.spacing = self.spacing_mm / self.g
        self.rng = rng
        # below 256 px the scene shrinks but the speckle keeps its size in pixels (a coarser
        # beam), so small test cines stay trackable instead of aliasing the speckle
        blur = max(1.0, 1.0 / self.g) / self.spacing
        self.psf_px = (self.psf_axial_mm * blur, tuple(v * blur for v in self.psf_lateral_mm))

    # to be provided by subclasses
    bounds: tuple[float, float, float, float]
    populations: list[Population]
    points: dict[str, tuple[float, float]]

    def material(self, X, Y) -> dict:
        """Per-scatterer quantities that do not change with time (computed once per scatterer)."""
        raise NotImplementedError

    def deform(self, m: dict, t: float):
        """Current positions ``(x, y)`` of material points described by ``m`` at time ``t`` (s)."""
        raise NotImplementedError

    def mask(self):
        """Image-plane mask (H, W) in 0..1, or None (e.g. the sector of a phased array)."""
        return None

    def extra_info(self) -> dict:
        return {}

    def renew_factor(self, frame: int) -> float:
        """Scatterer renewal before ``frame`` relative to the populations' rate."""
        return 1.0

    # probe-fixed artefacts (None: none); positions are image pixels
    shadow_gain: Callable | None = None
    fixed_echo: Callable | None = None
