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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.sources import PointSource
from ..io.table import from_array
from .base import REFERENCE_SIZE, Scene
from .render import SPEED_OF_SOUND, Renderer
from .scenes import SCENES

__all__ = [
    "REFERENCE_SIZE",
    "SCENARIOS",
    "SPEED_OF_SOUND",
    "Simulation",
    "ground_truth",
    "iter_frames",
    "noisy_estimates",
    "simulate",
    "write_simulation",
]

SCENARIOS = ("cardiac", "muscle", "probe_slide", "probe_slide_decorrelated")


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


def _check(scenario, n_frames, shape):
    if scenario not in SCENES:
        raise DustrackError(
            f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}"
        )
    cls = SCENES[scenario]
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
    return scene, Renderer(scene, rng)


def _frames(scene: Scene, renderer: Renderer):
    for i in range(scene.n_frames):
        if i:
            renderer.step(i)  # speckle decorrelation between frames
        yield renderer.frame(i / scene.fps)


def iter_frames(
    scenario: str = "cardiac",
    n_frames: int | None = None,
    seed: int = 0,
    shape: tuple[int, int] | None = None,
):
    """Yield the frames of :func:`simulate` one by one (for cines too long to hold in memory).

    The frames are identical to ``simulate(...).frames``; pair them with :func:`ground_truth`.
    """
    scene, renderer = _setup(scenario, n_frames, seed, shape)
    yield from _frames(scene, renderer)


def ground_truth(
    scenario: str = "cardiac",
    n_frames: int | None = None,
    seed: int = 0,
    shape: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """The truth table of :func:`simulate` without rendering any frame."""
    cls, n, shape = _check(scenario, n_frames, shape)
    return _truth_table(cls(shape, n, np.random.default_rng(seed)))


def simulate(
    scenario: str = "cardiac",
    n_frames: int | None = None,
    seed: int = 0,
    shape: tuple[int, int] | None = None,
) -> Simulation:
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
        "seed": int(seed),
        "shape": list(scene.shape),
        "f_mhz": scene.f_mhz,
        "psf_sigma_px": {"axial": scene.psf_px[0], "lateral": list(scene.psf_px[1])},
        "dynamic_range_db": scene.dynamic_range_db,
        "renewal_per_frame": {p.kind: p.renew for p in scene.populations},
        "render_scale": renderer.r,
        **scene.extra_info(),
    }
    return Simulation(
        frames, _truth_table(scene), scene.fps, (scene.spacing, scene.spacing), scene.name, info
    )


def noisy_estimates(
    xy: np.ndarray,
    seed: int = 0,
    sigma: float = 1.2,
    outlier_rate: float = 0.01,
    outlier_px: tuple[float, float] = (6.0, 10.0),
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


def _truth_table(scene: Scene) -> pd.DataFrame:
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
    from ..io.table import write_points_csv
    from ..io.video_write import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = write_video(sim.frames, out / f"{sim.scenario}.mp4", sim.fps, crf=crf)
    truth = out / f"{sim.scenario}_truth.csv"
    write_points_csv(sim.truth, truth, backup=False)
    return {"video": Path(video), "truth": truth}
