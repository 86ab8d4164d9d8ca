"""``fusion``: per-frame estimates as measurements, optical flow as the motion model.

For one label and one gap-free segment, with measurements ``z_t`` (the input), weights ``c_t``
(input confidence) and flow displacements ``m_t`` (from the grid fields of :mod:`.motion`,
read at the current estimate), the track ``x`` minimises

    sum_t c_t h_t |x_t - z_t|^2 / s_m^2  +  sum_t |x_{t+1} - x_t - m_t|^2 / s_d,t^2

where ``h_t`` are Huber weights (iteratively reweighted, so one outlying estimate barely pulls
the track; anchored measurements, i.e. accepted annotations, keep a very large weight),
``s_m`` is the measurement noise estimated robustly from the data, and ``s_d,t``
the flow noise (grows with the speed, and with the flow's error measured on the segment when
that error is large, and at most the measured disagreement of the flow with the measurements'
steps, whose common error no smoother can see; a frame pair whose flow was lost gets no flow
term). Each flow term is
also weighted frame by frame by how well the flow step agrees with the measurements' own
motion (Gaussian weights, :func:`_flow_trust`): flow that stands still while the estimates all
move (a probe-fixed pattern holding the flow) is not allowed to drag the track, while flow that
follows a fast real motion (a twitch) keeps its weight.
Each coordinate is a tridiagonal symmetric system, solved in O(n). First and last frames are
estimated like every other frame. The window length only caps how long flow is trusted:
``s_d >= s_m / W``, so a longer window allows more smoothing, as in DUSTrack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.linalg import solveh_banded

from .motion import Grid, interpolate


@dataclass(frozen=True)
class FusionParams:
    """Noise model of the fusion smoother.

    Attributes
    ----------
    flow_sigma : float
        Flow error per frame at rest (px).
    flow_speed : float
        Extra flow error per pixel of motion in that frame.
    huber : float
        Huber threshold in units of the measurement noise.
    iterations : int
        Reweighting passes (the flow is re-read at the new estimate in each).
    min_sigma : float
        Floor of the measurement noise estimate (px).
    flow_check : float
        The flow's own error, measured on the segment, is added to the flow noise only when it
        exceeds this fraction of the measurement noise (a flow that does not follow the
        tissue, e.g. decorrelated speckle, is then leaned on less).
    flow_trust : float
        Per-frame robustness of the flow terms: where the measurements drift away from the
        path the flow integrates by ``d`` px per frame (median-filtered, :func:`_flow_trust`),
        the flow step keeps the weight ``exp(-(d / (k s))^2 / 2)``, with ``k`` this value and
        ``s`` the typical such drift on the segment, at most what the measurement noise alone
        gives (``DRIFT_PER_NOISE`` s_m: a segment mostly held by a probe-fixed pattern does
        not set its own tolerance), at least 0.25 px or ``DRIFT_PER_NOISE_HIGH`` s_m if less
        (0: off). The weight must fall steeply
        once ``d`` is well above the noise: a flow term outweighs a measurement ~100 times.
    anchor_weight : float
        Weight of an anchored measurement (``manual``/``reviewed`` annotations) relative to
        an ordinary one: the track passes within a small fraction of a pixel of it.
    """

    flow_sigma: float = 0.075
    flow_speed: float = 0.15
    huber: float = 2.0
    iterations: int = 5
    min_sigma: float = 0.05
    flow_check: float = 0.5
    flow_trust: float = 4.0
    anchor_weight: float = 1e4


def _mad_sigma(e: np.ndarray) -> float:
    e = e[np.isfinite(e)]
    if len(e) < 4:
        return np.nan
    return 1.4826 * float(np.median(np.abs(e - np.median(e))))


def _motion(fields, ref, x, grid):
    """Flow displacement t -> t+1 at the estimate, and where it is known."""
    # one grid per frame pair: the pairs play the role of interpolate's labels
    m = interpolate(fields, x[:-1] - ref[:-1], grid)
    known = np.isfinite(m).all(axis=1)
    return np.where(known[:, None], m, 0.0), known


def _solve(z, w, m, v):
    """argmin sum w |x - z|^2 + sum v |x_{t+1} - x_t - m|^2, per coordinate (tridiagonal).

    ``w`` is (n,); ``v`` is (n - 1, 2): the flow's weight may differ between x and y.
    """
    out = np.empty_like(z, dtype=np.float64)
    for axis in range(2):
        va = v[:, axis]
        diag = w.copy()
        diag[:-1] += va
        diag[1:] += va
        ab = np.zeros((2, len(z)))
        ab[0, 1:] = -va
        ab[1] = diag
        rhs = w * z[:, axis]
        rhs[:-1] -= va * m[:, axis]
        rhs[1:] += va * m[:, axis]
        out[:, axis] = solveh_banded(ab, rhs, lower=False)
    return out


# the median-filtered drift's step where the flow follows the tissue, in units of the
# measurement noise: 0.3-0.5 on the simulator's cines (bench_smooth.py, bench_robust.py); the
# low end, so that a segment mostly held by a probe-fixed pattern is still doubted
DRIFT_PER_NOISE = 0.3
# the tolerance's floor (px), and the most it may be in units of the measurement noise (the
# middle of that 0.3-0.5 range)
TRUST_FLOOR = 0.25
DRIFT_PER_NOISE_HIGH = 0.4


def _flow_trust(
    z: np.ndarray, m: np.ndarray, known: np.ndarray, k: float, sigma_m: float
) -> np.ndarray:
    """Per-pair weight (n - 1,) of the flow steps ``m`` against the measurements' own motion.

    What is compared is the measurements minus the path the flow integrates, median-filtered
    over 5 frames (an outlier does not move the median): where the flow follows the tissue that
    difference is noise around a constant, however fast the tissue moves; where the flow is
    held by a probe-fixed pattern while the tissue slides, it drifts by the slide's speed.
    (Filtering the measurements themselves instead lags behind a twitch, and its correct
    flow steps were then doubted.)
    """
    n = len(z)
    if k <= 0 or n < 5:
        return np.ones(max(n - 1, 0))
    path = np.concatenate([np.zeros((1, 2)), np.cumsum(np.where(known[:, None], m, 0.0), axis=0)])
    drift = ndimage.median_filter(z - path, size=(5, 1), mode="mirror")  # an end outlier too
    d = np.linalg.norm(np.diff(drift, axis=0), axis=1)
    scale = np.median(d[known]) if known.any() else 0.0
    # at least 0.25 px, but never more than the drift step the measurements' noise alone gives
    # (0.3-0.5 s_m): with a fixed floor a precise input (a keyframe fill, s_m ~0.05 px) was
    # pulled by flow that disagreed with it by 20 times its noise per frame
    floor = min(TRUST_FLOOR, DRIFT_PER_NOISE_HIGH * sigma_m)
    scale = max(min(float(scale), DRIFT_PER_NOISE * sigma_m), floor)
    return np.exp(-0.5 * (d / (k * scale)) ** 2)


def _flow_noise(m, known, extra, spread, floor, params: FusionParams) -> np.ndarray:
    """Flow error per frame pair (n - 1,): grows with the motion; ``extra`` when the flow does
    not follow the measurements.

    It is also at most ``spread``, the measured spread of ``z_{t+1} - z_t - m_t``: the flow's
    error relative to the measurements cannot exceed how much the two disagree. An input built
    from optical flow (a keyframe fill) shares most of the flow's error, which no smoother can
    see; only the disagreement is left to correct, and a flow term weighted by its full error
    against a far more precise input moves good points at random (p95 up).
    """
    sd = np.hypot(params.flow_sigma + params.flow_speed * np.linalg.norm(m, axis=1), extra)
    if np.isfinite(spread) and known.any():
        sd = sd * min(1.0, spread / float(np.median(sd[known])))
    return np.maximum(sd, floor)


def fuse_segment(
    z: np.ndarray,
    fields: np.ndarray,
    ref: np.ndarray,
    window: int,
    confidence: np.ndarray | None = None,
    params: FusionParams = FusionParams(),
    grid: Grid = Grid(),
    anchors: np.ndarray | None = None,
) -> np.ndarray:
    """Fuse one gap-free segment.

    Parameters
    ----------
    z : (n, 2)
        Measurements (finite).
    fields : (n - 1, G, 2)
        Grid fields of the segment's frame pairs (see :func:`.motion.pair_fields`).
    ref : (n, 2)
        Grid centres.
    window : int
        Window length in frames (caps the flow's trust, see module docstring).
    confidence : (n,), optional
        Measurement weights in 0..1.
    anchors : (n,) bool, optional
        Measurements to keep (accepted annotations): weighted ``params.anchor_weight`` times
        and never down-weighted as outliers.

    Returns
    -------
    (n, 2) the fused track.
    """
    n = len(z)
    if n < 2:
        return z.astype(np.float64)
    c = np.ones(n) if confidence is None else np.clip(np.nan_to_num(confidence, nan=0.0), 0.02, 1.0)
    x = ref.copy()
    m, known = _motion(fields, ref, x, grid)
    # measurement noise from second differences (6 s_m^2; robust to brief fast motion), then
    # the flow's error from z_{t+1} - z_t - m_t (2 s_m^2 + s_flow^2)
    sigma_m = _mad_sigma(np.diff(z, 2, axis=0)) / np.sqrt(6)
    sigma_m = max(sigma_m if np.isfinite(sigma_m) else 1.0, params.min_sigma)
    e1 = _mad_sigma(np.diff(z, axis=0) - m)
    extra = np.sqrt(max(e1**2 - 2 * sigma_m**2, 0.0)) if np.isfinite(e1) else 0.0
    if extra < params.flow_check * sigma_m:
        extra = 0.0
    floor = sigma_m / max(window, 1)
    anchor = np.zeros(n, bool) if anchors is None else np.asarray(anchors, bool)
    for _ in range(params.iterations):
        r = np.linalg.norm(z - x, axis=1) / sigma_m
        huber = np.where(
            anchor, params.anchor_weight, np.minimum(1.0, params.huber / np.maximum(r, 1e-12))
        )
        w = c * huber / sigma_m**2
        sd = _flow_noise(m, known, extra, e1, floor, params)[:, None]
        trust = _flow_trust(z, m, known, params.flow_trust, sigma_m)[:, None]
        v = np.broadcast_to(np.where(known[:, None], trust / sd**2, 0.0), m.shape)
        x = _solve(z, w, m, v)
        m, known = _motion(fields, ref, x, grid)
    return x
