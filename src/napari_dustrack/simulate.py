"""Synthetic B-mode ultrasound cines with known motion of material points.

A scene is a cloud of point scatterers (random positions and amplitudes; dense and bright in
tissue, sparse and weak in blood) fixed in *material* coordinates ``(X, Y)`` and moved by a
known smooth deformation ``(x, y) = phi(X, Y, t)``. Each frame is the echo of that cloud:

1. every scatterer contributes its amplitude times ``exp(-2 pi i f0 y)`` (its round-trip phase
   at the pulse's spatial frequency ``f0`` along depth ``y``), splatted onto the pixel grid with
   bilinear weights; this is the quadrature-demodulated (baseband) form of convolving the
   scatterers with the RF point-spread function ``g(z, x) cos(2 pi f0 z)``, so the carrier never
   has to be sampled on the pixel grid and sub-pixel motion moves the speckle continuously;
2. the complex image is convolved with the Gaussian envelope of the PSF (axial x lateral, the
   lateral width growing away from the focus) and receive noise is added before that filter;
3. its magnitude is the envelope (what a Hilbert transform along depth gives for the RF line),
   with round-trip attenuation, partial time-gain compensation, and log compression to 8 bits
   over a fixed dynamic range.

A share of the scatterers is renewed every frame (speckle decorrelation; much faster in blood).
Ground truth is the same deformation applied to named material points, so it is exact to
sub-pixel precision. Positions are ``(x, y)`` in pixels, integer = pixel centre.

Geometry, motion and the PSF are defined for a 256-pixel image and scale with
``min(shape) / 256`` (a larger image is the same scene sampled finer, as a scanner's display
output is), so ``pixel_spacing`` shrinks accordingly. Large images are rendered at a reduced
internal resolution (where the PSF still spans > 1.5 pixels) and the band-limited complex
image is interpolated up before envelope detection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage

from .errors import DustrackError
from .io.sources import PointSource
from .io.table import from_array

SCENARIOS = ("cardiac", "muscle", "probe_slide", "probe_slide_decorrelated")
REFERENCE_SIZE = 256  # geometry below is given for a 256-pixel image
SPEED_OF_SOUND = 1.54  # mm/us


@dataclass
class Simulation:
    """A simulated cine and its ground truth.

    Attributes
    ----------
    frames : ndarray, uint8, (N, H, W)
    truth : DataFrame
        Point table (source ``manual``) of the named material points in every frame.
    fps : float
    pixel_spacing : tuple of float
        ``(dy, dx)`` in mm.
    scenario : str
    info : dict
        Scenario parameters (e.g. ``twitch_frames`` for ``muscle``), the PSF and the display
        settings (``dynamic_range_db``), all plain JSON-able values.
    """

    frames: np.ndarray
    truth: pd.DataFrame
    fps: float
    pixel_spacing: tuple[float, float]
    scenario: str
    info: dict = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(self.truth["label"]))


# --------------------------------------------------------------------------- helpers


def _smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _random_field(rng, bounds, cell: float, lo: float, hi: float) -> Callable:
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


def _ridges(d: np.ndarray, centres: np.ndarray, heights: np.ndarray, width: float) -> np.ndarray:
    """Sum of the two nearest Gaussian ridges at sorted ``centres`` (striated texture)."""
    k = np.clip(np.searchsorted(centres, d), 1, len(centres) - 1)
    out = np.zeros_like(d)
    for j in (k - 1, k):
        out += heights[j] * np.exp(-0.5 * ((d - centres[j]) / width) ** 2)
    return out


def _ridge_positions(rng, lo, hi, spacing, fixed=None):
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
class _Population:
    """Scatterers of one kind: relative density (0..1) and echo amplitude over material space."""

    density: Callable
    echo: Callable
    per_cell: float  # scatterers per PSF resolution cell where density == 1
    renew: float  # share renewed per frame
    kind: str = "tissue"
    accept: float = 1.0  # acceptance rate of rejection sampling (measured on the first draw)


# --------------------------------------------------------------------------- scenes


class _Scene:
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
    populations: list[_Population]
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


class _Cardiac(_Scene):
    """Short-axis view of the left ventricle through a phased array (sector image).

    The myocardial ring contracts radially with an incompressible wall (it thickens as the
    cavity shrinks), twists (endocardium more than epicardium) and translates a little with
    each beat, plus slow breathing motion. Blood in the cavity is dark and decorrelates fast.
    """

    name = "cardiac"
    fps = 50.0
    default_frames = 250
    spacing_mm = 0.25
    f_mhz = 3.5
    psf_axial_mm = 0.4
    psf_lateral_mm = (0.75, 1.2)
    focus = 0.55
    atten_db = 22.0
    tgc_db = 18.0
    heart_rate_bpm = 72.0
    shortening = 0.30  # endocardial radial shortening at end-systole
    twist_deg = 7.0

    def __init__(self, shape, n_frames, rng):
        super().__init__(shape, n_frames, rng)
        H, W = self.shape
        g = self.g
        self.cx, self.cy = (W - 1) / 2.0, (H - 1) / 2.0 + 6 * g
        self.r_endo, self.r_epi = 48 * g, 78 * g
        self.apex_y, self.half_angle = -30 * g, math.radians(42)
        pad = 8 * g + 3 * self._psf_px_max()  # inward motion + PSF reach
        self.bounds = (-pad, W - 1 + pad, -pad, H - 1 + pad)
        myo = _random_field(rng, self.bounds, 14 * g, 0.7, 1.3)
        around = _random_field(rng, self.bounds, 22 * g, 0.25, 1.4)
        pap = [(self.r_endo - 10 * g, math.radians(a)) for a in (40.0, 140.0)]  # papillary muscles
        self._papillary = [(self.cx + r * math.cos(a), self.cy + r * math.sin(a)) for r, a in pap]
        self._pap_r = 8 * g

        def in_pap(X, Y):
            near = [np.hypot(X - px, Y - py) < self._pap_r for px, py in self._papillary]
            return np.any(near, axis=0)

        def tissue_density(X, Y):
            R = np.hypot(X - self.cx, Y - self.cy)
            return ((R >= self.r_endo) | in_pap(X, Y)).astype(float)

        def tissue_echo(X, Y):
            R = np.hypot(X - self.cx, Y - self.cy)
            peri = (R >= self.r_epi) & (R < self.r_epi + 5 * g)
            return np.select(
                [R < self.r_endo, R < self.r_epi, peri], [0.8 * myo(X, Y), myo(X, Y), 2.6],
                0.55 * around(X, Y),
            )

        def blood_density(X, Y):
            R = np.hypot(X - self.cx, Y - self.cy)
            return ((R < self.r_endo) & ~in_pap(X, Y)).astype(float)

        self.populations = [
            _Population(tissue_density, tissue_echo, per_cell=12.0, renew=0.03),
            _Population(blood_density, lambda X, Y: np.full(np.shape(X), 0.015), per_cell=4.0,
                        renew=0.35, kind="blood"),
        ]
        mid = 0.5 * (self.r_endo + self.r_epi)
        polar = {  # angle measured from +x towards +y (image down): anterior is up
            "anterior_endo": (self.r_endo + 3 * g, -90.0),
            "anterior_epi": (self.r_epi - 3 * g, -90.0),
            "inferior_endo": (self.r_endo + 3 * g, 90.0),
            "inferior_epi": (self.r_epi - 3 * g, 90.0),
            "septal": (mid, 180.0),
            "lateral": (mid, 0.0),
        }
        self.points = {
            k: (self.cx + r * math.cos(math.radians(a)), self.cy + r * math.sin(math.radians(a)))
            for k, (r, a) in polar.items()
        }

    def _psf_px_max(self):
        return max(self.psf_px[1])

    def activation(self, t):
        """Contraction 0..1 over the cycle: systole, fast filling, diastasis, atrial kick."""
        phase = np.mod(np.asarray(t, float) * self.heart_rate_bpm / 60.0, 1.0)
        return np.select(
            [phase < 0.35, phase < 0.6, phase < 0.85],
            [0.5 * (1 - np.cos(np.pi * phase / 0.35)),
             0.5 * (1 + np.cos(np.pi * (phase - 0.35) / 0.25)), 0.0],
            -0.06 * np.sin(np.pi * (phase - 0.85) / 0.15) ** 2,  # atrial kick: slight extra filling
        )

    def material(self, X, Y):
        R = np.hypot(X - self.cx, Y - self.cy)
        theta = np.arctan2(Y - self.cy, X - self.cx)
        inside = R < self.r_endo
        # the heart (wall plus the pericardium on it) rotates and translates; around it the
        # motion fades over ~12 px (at 256 px): the heart slides within its surroundings
        wall = np.clip((R - self.r_endo) / (self.r_epi - self.r_endo), 0.0, 1.0)
        fade = np.exp(-0.5 * (np.maximum(R - self.r_epi - 5 * self.g, 0.0) / (12 * self.g)) ** 2)
        return {
            "R2": (R * R).astype(np.float32), "theta": theta.astype(np.float32),
            "inside": inside,
            "twist": ((1.0 - 0.35 * wall) * fade).astype(np.float32),  # endo twists most
            "carry": fade.astype(np.float32),
        }

    def deform(self, m, t):
        s = float(self.activation(t))
        r_endo_t = self.r_endo * (1.0 - self.shortening * s)
        delta = self.r_endo**2 - r_endo_t**2
        # cavity scales uniformly; wall and surroundings keep the area of every annulus
        r = np.where(m["inside"], np.sqrt(m["R2"]) * (r_endo_t / self.r_endo),
                     np.sqrt(np.maximum(m["R2"] - delta, 0.0)))
        ang = m["theta"] + math.radians(self.twist_deg) * s * m["twist"]
        tx = 3.0 * self.g * s
        ty = -2.0 * self.g * s + 2.5 * self.g * math.sin(2 * math.pi * t / 4.0)  # beat + breathing
        x = self.cx + r * np.cos(ang) + tx * m["carry"]
        y = self.cy + r * np.sin(ang) + ty * m["carry"]
        return x, y

    def mask(self):
        H, W = self.shape
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        ang = np.arctan2(xx - self.cx, yy - self.apex_y)
        edge = (self.half_angle - np.abs(ang)) * np.hypot(xx - self.cx, yy - self.apex_y)
        return np.clip(edge + 0.5, 0.0, 1.0).astype(np.float32)

    def extra_info(self):
        return {"heart_rate_bpm": self.heart_rate_bpm, "centre_xy": [self.cx, self.cy],
                "r_endo_px": self.r_endo, "r_epi_px": self.r_epi,
                "shortening": self.shortening, "twist_deg": self.twist_deg}


class _Muscle(_Scene):
    """Pennate muscle through a linear array: fascicles between two aponeuroses.

    A slow contraction (ramp, hold, release over the cine) shears the belly and thickens it a
    little, so the pennation angle grows by about 3 degrees while the aponeuroses slide; a twitch
    moves the belly ~10 px (at 256 px) within 60 ms, then relaxes.
    """

    name = "muscle"
    fps = 100.0
    default_frames = 300
    spacing_mm = 0.12
    f_mhz = 10.0
    psf_axial_mm = 0.2
    psf_lateral_mm = (0.36, 0.55)
    focus = 0.45
    atten_db = 18.0
    tgc_db = 14.0
    pennation_deg = 22.0
    twitch_px = 10.0  # at REFERENCE_SIZE
    twitch_ms = 60.0

    def __init__(self, shape, n_frames, rng):
        super().__init__(shape, n_frames, rng)
        H, W = self.shape
        g = self.g
        self.cx = (W - 1) / 2.0
        self.ys = 0.22 * H  # superficial aponeurosis (depth of its centre)
        self.yd0 = 0.74 * H  # deep aponeurosis at the image centre, tilted
        self.tilt = math.tan(math.radians(4.0))
        self.yb = 1.25 * H  # below the deep aponeurosis motion fades out towards here
        self.apo_half = 3.0 * g
        pad = 4 * max(self.psf_px[1])
        self.bounds = (-10 * g - pad, W - 1 + 0.25 * W + pad, -pad, H - 1 + pad)
        alpha = math.radians(self.pennation_deg)
        self.n_belly = np.array([-math.sin(alpha), math.cos(alpha)])  # normal to the fascicles
        self.mid = (self.cx, 0.5 * (self.ys + self.yd0))
        d_mid = float(self.n_belly @ self.mid)
        span = 2 * (W + H)
        self.belly_ridges = _ridge_positions(rng, d_mid - span, d_mid + span, (7 * g, 13 * g),
                                             d_mid)
        self.belly_heights = rng.uniform(1.5, 3.0, len(self.belly_ridges))
        self.belly_heights[np.argmin(np.abs(self.belly_ridges - d_mid))] = 2.5
        beta = math.radians(-12.0)
        self.n_deep = np.array([-math.sin(beta), math.cos(beta)])
        self.deep_ridges = _ridge_positions(rng, -span, span, (9 * g, 15 * g))
        self.deep_heights = rng.uniform(0.4, 1.0, len(self.deep_ridges))
        breaks = _random_field(rng, self.bounds, 10 * g, 0.3, 1.5)  # broken perimysium lines
        fat = _random_field(rng, self.bounds, 16 * g, 0.6, 1.4)
        septa = [(rng.uniform(0.35, 0.85) * self.ys, rng.uniform(40, 120) * g, rng.uniform(0, 6.3))
                 for _ in range(3)]

        def echo(X, Y):
            yd = self.deep_depth(X)
            belly = (Y > self.ys + self.apo_half) & (Y < yd - self.apo_half)
            apo = (np.abs(Y - self.ys) <= self.apo_half) | (np.abs(Y - yd) <= self.apo_half)
            d_b = self.n_belly[0] * X + self.n_belly[1] * Y
            d_d = self.n_deep[0] * X + self.n_deep[1] * Y
            sub = 0.22 * fat(X, Y)
            for y0, lam, ph in septa:
                yy = y0 + 3 * g * np.sin(2 * np.pi * X / lam + ph)
                sub = sub + 1.2 * np.exp(-0.5 * ((Y - yy) / (0.8 * g)) ** 2)
            skin = 2.5 * np.exp(-0.5 * ((Y - 4 * g) / (1.2 * g)) ** 2)
            brk = breaks(X, Y)
            return np.select(
                [apo, belly, Y > yd],
                [4.0 * brk**0.3,
                 0.15 + brk * _ridges(d_b, self.belly_ridges, self.belly_heights, 1.4 * g),
                 0.2 + 0.8 * brk * _ridges(d_d, self.deep_ridges, self.deep_heights, 1.3 * g)],
                sub + skin,
            )

        self.populations = [_Population(lambda X, Y: np.ones(np.shape(X)), echo, 12.0, 0.03)]
        a = np.array([math.cos(alpha), math.sin(alpha)])  # along the fascicle
        T = self.yd0 - self.ys
        self.points = {
            "fascicle_proximal": tuple(np.array(self.mid) - 0.2 * T / a[1] * a),
            "fascicle_distal": tuple(np.array(self.mid) + 0.2 * T / a[1] * a),
            "sup_apo_1": (0.3 * (W - 1), self.ys),
            "sup_apo_2": (0.7 * (W - 1), self.ys),
            "deep_apo_1": (0.35 * (W - 1), self.deep_depth(0.35 * (W - 1))),
            "deep_apo_2": (0.75 * (W - 1), self.deep_depth(0.75 * (W - 1))),
        }
        n = max(int(n_frames), 1)
        dur = max(round(self.twitch_ms * 1e-3 * self.fps), 1)
        start = min(int(round(0.6 * n)), max(n - dur - 1, 0))
        self.twitch_frames = (start, start + dur)

    def deep_depth(self, X):
        return self.yd0 + self.tilt * (np.asarray(X) - self.cx)

    def activation(self, t):
        """Slow contraction: ramp over 10-40 % of the cine, hold, release over 80-100 %."""
        u = np.asarray(t, float) * self.fps / max(self.n_frames - 1, 1)
        return _smoothstep((u - 0.1) / 0.3) - _smoothstep((u - 0.8) / 0.2)

    def twitch(self, t):
        """0 -> 1 over ``twitch_frames`` (smooth), then exponential relaxation (tau 120 ms)."""
        f = np.asarray(t, float) * self.fps
        s, e = self.twitch_frames
        rise = 0.5 * (1 - np.cos(np.pi * np.clip((f - s) / (e - s), 0.0, 1.0)))
        decay = np.exp(-np.maximum(f - e, 0.0) / self.fps / 0.12)
        return rise * decay

    def material(self, X, Y):
        T = self.yd0 - self.ys
        below = _smoothstep((Y - self.yd0) / (self.yb - self.yd0))
        A = np.where(Y < self.ys, _smoothstep(Y / self.ys), 1.0 - 0.7 * below)
        B = np.where(Y < self.ys, 0.0, np.where(Y < self.yd0, Y - self.ys, T * (1.0 - 0.7 * below)))
        return {"X": X.astype(np.float32), "Y": Y.astype(np.float32),
                "A": A.astype(np.float32), "B": B.astype(np.float32)}

    def deform(self, m, t):
        a, tw = float(self.activation(t)), float(self.twitch(t))
        shift = -12.0 * self.g * a + self.twitch_px * self.g * tw
        shear = -0.22 * a - 0.03 * tw
        stretch = 0.05 * a + 0.01 * tw
        return m["X"] + shift * m["A"] + shear * m["B"], m["Y"] + stretch * m["B"]

    def pennation(self, t) -> float:
        """Pennation angle (degrees) of the belly's fascicles at time ``t``."""
        a, tw = float(self.activation(t)), float(self.twitch(t))
        alpha = math.radians(self.pennation_deg)
        shear, stretch = -0.22 * a - 0.03 * tw, 0.05 * a + 0.01 * tw
        return math.degrees(math.atan2((1 + stretch) * math.sin(alpha),
                                       math.cos(alpha) + shear * math.sin(alpha)))

    def extra_info(self):
        n = self.n_frames
        return {"twitch_frames": tuple(self.twitch_frames), "twitch_px": self.twitch_px * self.g,
                "pennation_deg": [self.pennation(f / self.fps) for f in range(n)],
                "superficial_aponeurosis_y": self.ys, "deep_aponeurosis_y": self.yd0}


class _ProbeSlide(_Muscle):
    """The muscle's tissue under a linear probe that slides sideways in bursts (20 fps).

    Between slides the probe rests on the skin (the tissue only breathes: a few pixels of slow
    vertical motion); during each slide the whole tissue moves 6-10 px per frame across the image.
    An air bubble in the coupling gel, under the probe at a fixed lateral position, reflects
    brightly, casts an acoustic shadow column down the whole image and rings down in a comet of
    bands inside that column; the probe-skin interface adds reverberation bands across the near
    field. These artefacts are fixed to the *probe*, i.e. still in the image, while the tissue
    slides under them: a pattern that optical flow locks onto.
    """

    name = "probe_slide"
    fps = 20.0
    default_frames = 120
    slide_starts = (0.12, 0.42, 0.72)  # fractions of the cine
    slide_px = (56.0, -56.0, 40.0)  # probe travel of each slide at REFERENCE_SIZE
    slide_frames = 10  # duration of a slide (peak speed 1.5 x mean: 8.4 px/frame at 256 px)
    shadow_x = (0.55, 0.63)  # shadow column (fractions of the width)
    shadow_floor = 0.04  # amplitude left in the shadow
    decorrelation_per_px = 0.0  # extra scatterer renewal per pixel of probe motion per frame

    def __init__(self, shape, n_frames, rng):
        super().__init__(shape, n_frames, rng)
        n = max(int(n_frames), 1)
        dur = max(min(self.slide_frames, n // 5), 1)
        self.slides = [(min(int(round(f * n)), max(n - dur - 1, 0)), dur, px * self.g)
                       for f, px in zip(self.slide_starts, self.slide_px)]
        H, W = self.shape
        self.shadow = (self.shadow_x[0] * (W - 1), self.shadow_x[1] * (W - 1))
        self.bubble_y = 5.0 * self.g
        self.reverb_step = 13.0 * self.g  # probe-skin round trip (reverberation period)

    def probe(self, t):
        """Lateral probe position (pixels, 0 at frame 0) at time ``t`` (s)."""
        f = np.asarray(t, float) * self.fps
        return sum(px * _smoothstep((f - s) / d) for s, d, px in self.slides)

    def material(self, X, Y):
        m = super().material(X, Y)
        m["depth"] = (np.asarray(Y, float) / self.shape[0]).astype(np.float32)
        return m

    def deform(self, m, t):
        breathe = 2.0 * self.g * math.sin(2 * math.pi * t / 3.0)
        return m["X"] - float(self.probe(t)), m["Y"] + breathe * m["depth"]

    def renew_factor(self, frame: int) -> float:
        speed = abs(float(self.probe(frame / self.fps) - self.probe((frame - 1) / self.fps)))
        return 1.0 + self.decorrelation_per_px * speed / 0.03

    def shadow_gain(self, x, y):
        """Amplitude factor (0..1) of tissue echoes at image position ``(x, y)``."""
        x0, x1 = self.shadow
        edge = 1.5 * self.g
        col = _smoothstep((x - x0 + edge) / (2 * edge)) * _smoothstep((x1 - x + edge) / (2 * edge))
        below = _smoothstep((y - self.bubble_y) / (2 * self.g))
        return 1.0 - (1.0 - self.shadow_floor) * col * below

    def fixed_echo(self, x, y):
        """Echo amplitude of the probe-fixed artefacts at image position ``(x, y)``."""
        x0, x1 = self.shadow
        H = self.shape[0]
        inside = (x > x0) & (x < x1)
        ring = np.exp(-0.5 * (((y - self.bubble_y) % self.reverb_step) / (1.0 * self.g)) ** 2)
        comet = inside * np.exp(-(y - self.bubble_y) / (0.4 * H)) * 0.5 * ring * (y > 0)
        bubble = inside * 4.0 * np.exp(-0.5 * ((y - self.bubble_y) / (1.2 * self.g)) ** 2)
        near = np.exp(-y / (0.2 * H)) * 1.2 * np.exp(
            -0.5 * ((y % self.reverb_step - self.reverb_step / 2) / (1.2 * self.g)) ** 2)
        return bubble + comet + near * (y > self.reverb_step / 2)

    def extra_info(self):
        n = self.n_frames
        probe = [float(self.probe(f / self.fps)) for f in range(n)]
        return {"probe_x": probe,
                "slide_frames": [[s, s + d] for s, d, _ in self.slides],
                "shadow_columns_x": list(self.shadow), "bubble_y": self.bubble_y,
                "reverberation_period_px": self.reverb_step,
                "decorrelation_per_px": self.decorrelation_per_px}


class _ProbeSlideDecorrelated(_ProbeSlide):
    """:class:`_ProbeSlide` with out-of-plane motion during the slides: 3 % of the scatterers
    are renewed per pixel the probe moves (about a quarter per frame mid-slide)."""

    name = "probe_slide_decorrelated"
    decorrelation_per_px = 0.03


_SCENES = {"cardiac": _Cardiac, "muscle": _Muscle, "probe_slide": _ProbeSlide,
           "probe_slide_decorrelated": _ProbeSlideDecorrelated}


# --------------------------------------------------------------------------- renderer


class _Renderer:
    """Scatterers -> 8-bit B-mode frames for one scene (state: scatterers and the RNG)."""

    def __init__(self, scene: _Scene, rng):
        self.scene, self.rng = scene, rng
        H, W = scene.shape
        sp = scene.spacing
        sig_ax, sig_lat = scene.psf_px[0], np.array(scene.psf_px[1])
        # render coarser where the PSF is wide: the complex image is band-limited, so it is
        # interpolated up exactly enough, and the cost stays near that of a 256-px frame
        self.r = min(sig_ax, sig_lat[0]) / 1.5
        self.r = 1.0 if self.r < 1.5 else self.r
        self.h, self.w = max(int(round(H / self.r)), 8), max(int(round(W / self.r)), 8)
        self.sx, self.sy = self.w / W, self.h / H
        self.sig_ax, self.sig_lat = sig_ax * self.sy, sig_lat * self.sx
        self.m = int(math.ceil(3 * max(self.sig_ax, self.sig_lat.max()))) + 1
        self.k0 = 2 * scene.f_mhz / SPEED_OF_SOUND * sp  # round-trip cycles per output pixel
        depth = (np.arange(self.h + 2 * self.m, dtype=np.float32) - self.m + 0.5) / self.h
        self.att = 10 ** (-scene.atten_db * depth / 20)[:, None, None].astype(np.float32)
        self.tgc = 10 ** (scene.tgc_db * depth / 20)[:, None, None].astype(np.float32)
        far = np.clip(np.abs(depth - scene.focus) / max(scene.focus, 1 - scene.focus), 0, 1)
        self.blend = far[:, None, None].astype(np.float32)
        cell = 2 * math.pi * sig_ax * sig_lat[0]  # resolution cell, output pixels^2
        self.pops = []
        for pop in scene.populations:
            per_px = pop.per_cell / cell
            area = (scene.bounds[1] - scene.bounds[0]) * (scene.bounds[3] - scene.bounds[2])
            X, Y = self._draw(pop, int(per_px * area), exact=False)
            self.pops.append(self._state(pop, X, Y))
        # receive noise: per-pixel sd matched to the splatted tissue signal, scaled to noise_db
        tissue_px = max(p.per_cell for p in scene.populations) / cell / (self.sx * self.sy)
        self.noise_sd = float(math.sqrt(tissue_px) * 10 ** (scene.noise_db / 20))
        self.mask = scene.mask()
        self.ref = None
        self.renew_scale = 1.0
        self.shadow, self.fixed = self._probe_fixed(per_px=max(
            p.per_cell for p in scene.populations) / cell)

    def _grid_xy(self):
        """Output-pixel coordinates (x, y) of the padded render grid's nodes."""
        m, hp, wp = self.m, self.h + 2 * self.m, self.w + 2 * self.m
        x = (np.arange(wp, dtype=np.float64) - m + 0.5) / self.sx - 0.5
        y = (np.arange(hp, dtype=np.float64) - m + 0.5) / self.sy - 0.5
        return np.meshgrid(x, y)

    def _probe_fixed(self, per_px: float):
        """Shadow gain (hp, wp, 1) and the echo grid of the probe-fixed artefacts, or Nones.

        The artefacts' scatterers never move or renew: their speckle is still in the image.
        """
        scene = self.scene
        if scene.shadow_gain is None:
            return None, None
        gx, gy = self._grid_xy()
        shadow = scene.shadow_gain(gx, gy).astype(np.float32)[..., None]
        H, W = scene.shape
        k = int(per_px * H * W)
        x, y = self.rng.uniform(-0.5, W - 0.5, k), self.rng.uniform(-0.5, H - 0.5, k)
        amp = (scene.fixed_echo(x, y) * self.rng.standard_normal(k)).astype(np.float32)
        return shadow, self._splat(x, y, amp) * self.att

    def _draw(self, pop: _Population, n: int, exact: bool = True):
        """``n`` material positions from the population's density (rejection sampling).

        With ``exact=False`` one batch of ``n`` candidates is thinned (the initial cloud, whose
        size follows the density); otherwise candidates are drawn until ``n`` are accepted.
        """
        x0, x1, y0, y1 = self.scene.bounds
        xs, ys, have, tried = [], [], 0, 0
        while True:
            rate = max(have / tried, 0.01) if tried else pop.accept
            k = max(n, 64) if not exact else int(1.2 * (n - have) / rate) + 16
            X = self.rng.uniform(x0, x1, k)
            Y = self.rng.uniform(y0, y1, k)
            keep = self.rng.random(k) < pop.density(X, Y)
            xs.append(X[keep])
            ys.append(Y[keep])
            have, tried = have + int(keep.sum()), tried + k
            if not exact or have >= n:
                break
        if not exact:
            pop.accept = max(have / tried, 0.01)
        X, Y = np.concatenate(xs), np.concatenate(ys)
        return (X[:n], Y[:n]) if exact else (X, Y)

    def _state(self, pop, X, Y):
        amp = (pop.echo(X, Y) * self.rng.standard_normal(len(X))).astype(np.float32)
        return {"pop": pop, "m": self.scene.material(X, Y), "amp": amp}

    def _renew(self, st):
        n = len(st["amp"])
        rate = min(st["pop"].renew * self.renew_scale, 1.0)
        idx = np.flatnonzero(self.rng.random(n) < rate)
        if len(idx) == 0:
            return
        X, Y = self._draw(st["pop"], len(idx))
        fresh = self._state(st["pop"], X, Y)
        for key, value in fresh["m"].items():
            st["m"][key][idx] = value
        st["amp"][idx] = fresh["amp"]

    def _splat(self, x, y, amp):
        """Bilinear splat of complex weights onto the padded render grid -> (h+2m, w+2m, 2)."""
        m, hp, wp = self.m, self.h + 2 * self.m, self.w + 2 * self.m
        u = (x + 0.5) * self.sx - 0.5 + m  # output pixel centres -> render grid (as cv2.resize)
        v = (y + 0.5) * self.sy - 0.5 + m
        ok = (u >= 0) & (u < wp - 1) & (v >= 0) & (v < hp - 1)
        u, v, amp = u[ok], v[ok], amp[ok]
        cycles = self.k0 * y[ok].astype(np.float64)  # exact depth, not the grid's
        phase = ((cycles - np.floor(cycles)) * (-2 * np.pi)).astype(np.float32)
        re, im = amp * np.cos(phase), amp * np.sin(phase)
        u0, v0 = np.floor(u), np.floor(v)
        fu, fv = u - u0, v - v0
        base = v0.astype(np.intp) * wp + u0.astype(np.intp)
        size, length = hp * wp, hp * wp + wp + 2
        out = np.empty((hp, wp, 2), np.float32)
        # bilinear weights: one bincount per corner at the same index, shifted afterwards
        for c, val in enumerate((re, im)):
            top, bottom = val * (1 - fv), val * fv
            acc = np.bincount(base, top * (1 - fu), length)
            acc[1:] += np.bincount(base, top * fu, length)[:-1]
            acc[wp:] += np.bincount(base, bottom * (1 - fu), length)[:-wp]
            acc[wp + 1:] += np.bincount(base, bottom * fu, length)[:-wp - 1]
            out[..., c] = acc[:size].reshape(hp, wp)
        return out

    def _psf(self, grid):
        ax = cv2.getGaussianKernel(2 * int(3 * self.sig_ax) + 1, self.sig_ax, cv2.CV_32F)
        one = np.ones((1, 1), np.float32)
        axial = cv2.sepFilter2D(grid, -1, one, ax, borderType=cv2.BORDER_CONSTANT)
        out = []
        for sig in self.sig_lat:
            k = cv2.getGaussianKernel(2 * int(3 * sig) + 1, float(sig), cv2.CV_32F)
            out.append(cv2.sepFilter2D(axial, -1, k, one, borderType=cv2.BORDER_CONSTANT))
        return out[0] + self.blend * (out[1] - out[0])

    def envelope(self, t: float) -> np.ndarray:
        """Envelope image (H, W) float32 at time ``t`` (s)."""
        xs, ys, amps = [], [], []
        for st in self.pops:
            x, y = self.scene.deform(st["m"], t)
            xs.append(x), ys.append(y), amps.append(st["amp"])
        grid = self._splat(np.concatenate(xs), np.concatenate(ys), np.concatenate(amps))
        grid *= self.att
        if self.shadow is not None:  # probe-fixed: the shadow dims tissue, the artefacts add
            grid *= self.shadow
            grid += self.fixed
        grid += self.rng.standard_normal(grid.shape, dtype=np.float32) * self.noise_sd
        iq = self._psf(grid) * self.tgc
        m = self.m
        iq = iq[m:m + self.h, m:m + self.w]
        H, W = self.scene.shape
        if (self.h, self.w) != (H, W):
            iq = cv2.resize(iq, (W, H), interpolation=cv2.INTER_CUBIC)
        env = cv2.magnitude(*cv2.split(iq))
        return env if self.mask is None else cv2.multiply(env, self.mask)

    def frame(self, t: float) -> np.ndarray:
        """One 8-bit frame; the display gain is fixed on the first frame (no flicker)."""
        env = self.envelope(t)
        if self.ref is None:
            self.ref = float(np.percentile(env[env > 0], 99.5)) * 10 ** (-self.scene.gain_db / 20)
        dr = self.scene.dynamic_range_db
        # grey = 255 (20 log10(env / ref) + dr) / dr, rounded and saturated to 0..255
        log_env = cv2.log(np.maximum(env, self.ref * 1e-6, out=env))
        scale = 255.0 / dr * 20.0 / math.log(10.0)
        offset = 255.0 - scale * math.log(self.ref)
        return cv2.addWeighted(log_env, scale, log_env, 0.0, offset, dtype=cv2.CV_8U)

    def step(self, frame: int | None = None):
        """Renew scatterers before ``frame`` (the scene may renew more while the probe moves)."""
        self.renew_scale = 1.0 if frame is None else self.scene.renew_factor(frame)
        for st in self.pops:
            self._renew(st)


# --------------------------------------------------------------------------- API


def _check(scenario, n_frames, shape):
    if scenario not in _SCENES:
        raise DustrackError(
            f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
    cls = _SCENES[scenario]
    n = cls.default_frames if n_frames is None else int(n_frames)
    if n < 1:
        raise DustrackError(f"the number of frames must be >= 1, not {n_frames}")
    shape = (REFERENCE_SIZE, REFERENCE_SIZE) if shape is None else tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 32:
        raise DustrackError(f"shape must be (height, width) with both >= 32, not {shape}")
    return cls, n, shape


def _setup(scenario, n_frames, seed, shape):
    cls, n, shape = _check(scenario, n_frames, shape)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DustrackError(f"the seed must be a whole number >= 0, not {seed!r}")
    rng = np.random.default_rng(seed)
    scene = cls(shape, n, rng)
    return scene, _Renderer(scene, rng)


def _frames(scene: _Scene, renderer: _Renderer):
    for i in range(scene.n_frames):
        if i:
            renderer.step(i)  # speckle decorrelation between frames
        yield renderer.frame(i / scene.fps)


def iter_frames(scenario: str = "cardiac", n_frames: int | None = None, seed: int = 0,
                shape: tuple[int, int] | None = None):
    """Yield the frames of :func:`simulate` one by one (for cines too long to hold in memory).

    The frames are identical to ``simulate(...).frames``; pair them with :func:`ground_truth`.
    """
    scene, renderer = _setup(scenario, n_frames, seed, shape)
    yield from _frames(scene, renderer)


def ground_truth(scenario: str = "cardiac", n_frames: int | None = None, seed: int = 0,
                 shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """The truth table of :func:`simulate` without rendering any frame."""
    cls, n, shape = _check(scenario, n_frames, shape)
    return _truth_table(cls(shape, n, np.random.default_rng(seed)))


def simulate(scenario: str = "cardiac", n_frames: int | None = None, seed: int = 0,
             shape: tuple[int, int] | None = None) -> Simulation:
    """Simulate a B-mode cine with known motion.

    Parameters
    ----------
    scenario : {"cardiac", "muscle"}
        ``cardiac``: short-axis left ventricle, contracting and twisting (72 bpm, 50 fps,
        250 frames). ``muscle``: pennate muscle with a slow contraction and a twitch
        (100 fps, 300 frames).
    n_frames : int, optional
        Number of frames (default per scenario).
    seed : int
        Everything random (scatterers, texture, noise) follows from it.
    shape : (int, int), optional
        ``(height, width)`` in pixels, default ``(256, 256)``; the scene scales with
        ``min(shape)``.

    Returns
    -------
    Simulation

    Raises
    ------
    DustrackError
        Unknown scenario (the message lists the known ones), fewer than 1 frame, or a side
        below 32 pixels.
    """
    scene, renderer = _setup(scenario, n_frames, seed, shape)
    frames = np.empty((scene.n_frames,) + scene.shape, np.uint8)
    for i, frame in enumerate(_frames(scene, renderer)):
        frames[i] = frame
    info = {
        "seed": int(seed), "shape": list(scene.shape), "f_mhz": scene.f_mhz,
        "psf_sigma_px": {"axial": scene.psf_px[0], "lateral": list(scene.psf_px[1])},
        "dynamic_range_db": scene.dynamic_range_db,
        "renewal_per_frame": {p.kind: p.renew for p in scene.populations},
        "render_scale": renderer.r, **scene.extra_info(),
    }
    return Simulation(frames, _truth_table(scene), scene.fps, (scene.spacing, scene.spacing),
                      scene.name, info)


def noisy_estimates(xy: np.ndarray, seed: int = 0, sigma: float = 1.2,
                    outlier_rate: float = 0.01, outlier_px: tuple[float, float] = (6.0, 10.0)
                    ) -> np.ndarray:
    """Per-frame estimates as a detector gives them: ``xy`` (N, L, 2) plus Gaussian jitter
    (``sigma`` px) and, at a share ``outlier_rate`` of the points, outliers of ``outlier_px``
    px in a random direction. The noise model of the smoother's tests and benchmark."""
    rng = np.random.default_rng(seed)
    raw = xy + rng.normal(0, sigma, xy.shape)
    hit = rng.random(xy.shape[:2]) < outlier_rate
    ang = rng.uniform(0, 2 * np.pi, hit.sum())
    mag = rng.uniform(*outlier_px, hit.sum())
    raw[hit] += np.stack([np.cos(ang), np.sin(ang)], axis=1) * mag[:, None]
    return raw


def _truth_table(scene: _Scene) -> pd.DataFrame:
    """Positions of the scene's named material points in every frame (source ``manual``)."""
    names = list(scene.points)
    X = np.array([scene.points[k][0] for k in names], float)
    Y = np.array([scene.points[k][1] for k in names], float)
    m = scene.material(X, Y)
    m = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in m.items()}
    xy = np.empty((scene.n_frames, len(names), 2))
    for i in range(scene.n_frames):
        x, y = scene.deform(m, i / scene.fps)
        xy[i, :, 0], xy[i, :, 1] = x, y
    return from_array(xy, names, source=PointSource.MANUAL.value)


def write_simulation(sim: Simulation, out_dir, crf: int = 8) -> dict[str, Path]:
    """Write ``<scenario>.mp4`` (H.264 at ``sim.fps``) and ``<scenario>_truth.csv`` to ``out_dir``.

    Returns
    -------
    dict
        ``{"video": Path, "truth": Path}``.
    """
    from .io.table import write_points_csv
    from .io.video_write import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = write_video(sim.frames, out / f"{sim.scenario}.mp4", sim.fps, crf=crf)
    truth = out / f"{sim.scenario}_truth.csv"
    write_points_csv(sim.truth, truth, backup=False)
    return {"video": Path(video), "truth": truth}
