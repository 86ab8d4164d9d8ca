"""Final tracks from the best information: accepted annotations, reliable flow, the model.

Every source says something different about a point:

* **annotations** (``manual``, ``reviewed``): what a person placed or accepted. They are kept
  (anchors of the smoother, within a small fraction of a pixel).
* **flow** (the keyframe fill): precise between keyframes where its confidence is high, wrong
  where it locked onto something (its confidence says so, see :mod:`.flow_confidence`).
* **model** (heatmap predictions): independent of the flow, but with a *systematic* error: a
  model trained on few frames pulls its predictions towards the positions it saw most, i.e. it
  undershoots or overshoots at the extremes of motion. :func:`model_bias` measures that error
  against the annotations (mean signed error per label, and its trend along the label's main
  direction of motion) and :meth:`Bias.correct` removes it.

:func:`final_tracks` first takes the fill's LK drift back at the annotations
(:func:`closed_flow`), then weighs flow and (corrected) model per frame by their errors, pins
the annotations, and runs the ``fusion`` smoother over the result with the annotations as
anchors.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import DustrackError
from . import flow_confidence as fc

MIN_BIAS_POINTS = 3  # annotated frames a label needs before its model bias is measured
EXTREME_SHARE = 0.2  # frames in each tail of a label's motion that count as its extremes


@dataclass
class Bias:
    """The model's systematic error per label, from frames where an annotation exists.

    Attributes
    ----------
    mean : ndarray (L, 2)
        Mean signed error (model - annotation), pixels; NaN where not measured.
    slope : ndarray (L, 2)
        Change of the error per pixel of displacement along ``axis`` (0 where not measured).
    axis, centre : ndarray (L, 2)
        The label's main direction of motion (unit vector) and mean annotated position.
    extremes : ndarray (L, 2, 2)
        Mean signed error at the low and high ``EXTREME_SHARE`` of the displacement.
    counts : ndarray (L,)
        Annotated frames with a model prediction, per label.
    residual : ndarray (L,)
        RMS error (pixels) left at the annotated frames once the bias is removed: the model's
        random error, NaN where not measured.
    """

    mean: np.ndarray
    slope: np.ndarray
    axis: np.ndarray
    centre: np.ndarray
    extremes: np.ndarray
    counts: np.ndarray
    residual: np.ndarray

    def error_at(self, xy: np.ndarray) -> np.ndarray:
        """The predicted systematic error (N, L, 2) of model positions ``xy`` (N, L, 2)."""
        d = ((xy - self.centre) * self.axis).sum(axis=2, keepdims=True)
        err = np.nan_to_num(self.mean)[None] + d * self.slope[None]
        return np.where(np.isfinite(self.mean)[None], err, 0.0)

    def correct(self, xy: np.ndarray) -> np.ndarray:
        """Model positions with the systematic error removed."""
        return xy - self.error_at(xy)

    def lines(self, labels) -> list[str]:
        """One line per label: mean signed error and at the extremes of motion (pixels)."""
        out = []
        for i, name in enumerate(labels):
            if not np.isfinite(self.mean[i]).all():
                out.append(
                    f"{name}: model bias not measured ({int(self.counts[i])} annotated "
                    f"frame(s), {MIN_BIAS_POINTS} needed)"
                )
                continue
            lo, hi = self.extremes[i]
            out.append(
                f"{name}: mean signed error ({self.mean[i, 0]:+.2f}, {self.mean[i, 1]:+.2f})"
                f" px; at the extremes of motion ({lo[0]:+.2f}, {lo[1]:+.2f}) and "
                f"({hi[0]:+.2f}, {hi[1]:+.2f}) px"
            )
        return out


def model_bias(model: np.ndarray, reference: np.ndarray) -> Bias:
    """Measure the model's systematic error against annotated positions.

    Parameters
    ----------
    model, reference : ndarray (N, L, 2)
        Model predictions and annotations (NaN where absent).
    """
    n_labels = model.shape[1]
    bias = Bias(
        np.full((n_labels, 2), np.nan),
        np.zeros((n_labels, 2)),
        np.zeros((n_labels, 2)),
        np.zeros((n_labels, 2)),
        np.full((n_labels, 2, 2), np.nan),
        np.zeros(n_labels, int),
        np.full(n_labels, np.nan),
    )
    for lab in range(n_labels):
        both = np.isfinite(model[:, lab]).all(axis=1) & np.isfinite(reference[:, lab]).all(axis=1)
        bias.counts[lab] = int(both.sum())
        if both.sum() < MIN_BIAS_POINTS:
            continue
        ref, err = reference[both, lab], model[both, lab] - reference[both, lab]
        centre = ref.mean(axis=0)
        axis = _main_axis(ref - centre)
        d = (ref - centre) @ axis
        bias.centre[lab], bias.axis[lab] = centre, axis
        bias.mean[lab] = err.mean(axis=0)
        if len(d) >= 2 * MIN_BIAS_POINTS and np.ptp(d) > 1.0:
            dc = d - d.mean()
            bias.slope[lab] = (dc @ (err - err.mean(axis=0))) / (dc @ dc)
            bias.mean[lab] = err.mean(axis=0) - d.mean() * bias.slope[lab]
        k = max(1, int(round(EXTREME_SHARE * len(d))))
        order = np.argsort(d)
        bias.extremes[lab] = err[order[:k]].mean(axis=0), err[order[-k:]].mean(axis=0)
        left = err - bias.mean[lab] - d[:, None] * bias.slope[lab]
        # a fit on few points looks better than it is: degrees of freedom, not the count
        dof = max(len(d) - (2 if np.any(bias.slope[lab]) else 1), 1)
        bias.residual[lab] = float(np.sqrt((left**2).sum() / dof))
    return bias


def _main_axis(v: np.ndarray) -> np.ndarray:
    """Unit vector of the largest spread of ``v`` (n, 2) (x axis when there is none)."""
    if len(v) < 2 or not np.any(v):
        return np.array([1.0, 0.0])
    _, _, vt = np.linalg.svd(v, full_matrices=False)
    return vt[0]


FLOW_SIGMA = 0.3  # px: error of a flow point of confidence 1 (LK on speckle, sub-pixel)
MODEL_SIGMA = 2.0  # px: the model's error where it could not be measured against annotations
REFERENCE_SIGMA = 0.5  # px: a combined error this small gives the smoother's full weight
ENSEMBLE_WINDOWS = (31, 45, 61, 81)  # LK windows whose closed tracks are averaged (45:
# DUSTrack's), each weighed by its own misses at the keyframes: a deforming heart keeps the
# small windows, a muscle's lines and a probe's fixed patterns favour the large ones
MISS_SIGMA = 0.3  # px: a window's miss this small counts as no drift at all
ENSEMBLE_TOL = 2.0  # px: a window's closed track farther than this from the fill's is left out
CLOSED_SIGMA = 0.2  # px: error of the closed ensemble where its tracks agree (< FLOW_SIGMA:
# several windows averaged, the drift taken back; seeds 0-1 of cardiac, muscle, probe_slide)


def combine(flow, flow_conf, model, model_conf, model_sigma=None):
    """Per-frame measurement and weight from flow and model: inverse-variance weighted.

    A flow point's variance is ``FLOW_SIGMA^2 / confidence``; a model point's is its label's
    measured random error (``model_sigma`` (L,), else ``MODEL_SIGMA``) squared over its
    confidence. The weight handed to the smoother (0..1) is ``REFERENCE_SIGMA^2`` over the
    combined variance.
    """
    shape = (flow if flow is not None else model).shape
    n_labels = shape[1]
    sig_m = (
        np.full(n_labels, MODEL_SIGMA)
        if model_sigma is None
        else np.where(np.isfinite(model_sigma), np.maximum(model_sigma, FLOW_SIGMA), MODEL_SIGMA)
    )
    z_sum, w_sum = np.zeros(shape), np.zeros(shape[:2])
    for xy, c, sigma in (
        (flow, flow_conf, np.full(n_labels, FLOW_SIGMA)),
        (model, model_conf, sig_m),
    ):
        if xy is None:
            continue
        c = np.ones(shape[:2]) if c is None else np.clip(np.nan_to_num(c), 0.0, 1.0)
        have = np.isfinite(xy).all(axis=2)
        w = np.where(have, np.maximum(c, 1e-3) / sigma[None] ** 2, 0.0)
        z_sum += w[..., None] * np.nan_to_num(xy)
        w_sum += w
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(w_sum[..., None] > 0, z_sum / w_sum[..., None], np.nan)
    return z, np.clip(w_sum * REFERENCE_SIGMA**2, 0.0, 1.0)


def closed_flow(
    frames, keys: np.ndarray, flow: np.ndarray, *, params=None, cancel=None
) -> np.ndarray:
    """The fill with each LK track's closure error removed, where the fill is LK-RSTC.

    A forward LK track from keyframe ``s`` arrives at keyframe ``e`` off the annotation by its
    accumulated drift ``dF`` (and the backward track at ``s`` by ``dB``). LK's error grows with
    the motion it follows, so the drift is taken back along the track in proportion to the path
    length covered so far; the two corrected tracks then meet both keyframes and are averaged
    (their remaining errors are alike in size: a bridge pinned at both ends). RSTC only blends
    the uncorrected tracks. Segments where ``flow`` is not the LK-RSTC blend of these tracks
    (re-tracked by the robust fill, or LK lost the point) keep ``flow``.

    The result is not taken blindly: per point it is weighed against the fill by the two
    estimates' expected errors (:func:`_closed_share`), so that a cine where LK's drift does
    not grow along the path keeps its fill.

    Elsewhere the corrected tracks of LK windows ``ENSEMBLE_WINDOWS`` (besides the fill's)
    are averaged too: each window sees another neighbourhood of speckle, so part of their
    errors is independent and averages out. Each window is weighed by its own misses at the
    keyframes (:func:`_ensemble`): which window size drifts least depends on the tissue (a
    deforming heart wall, a muscle's lines). A window's track that strays from the fill's own
    corrected track by more than ``ENSEMBLE_TOL`` lost the point and is left out.

    Parameters
    ----------
    frames : sequence of 2-D frames
    keys : (N, L, 2)
        Keyframe positions (exact annotations), NaN elsewhere.
    flow : (N, L, 2)
        The keyframe fill on the same keys.
    """
    from ..errors import raise_if_cancelled
    from ._frames import GrayFrames
    from .lk import LKParams, rstc_weight

    params = params or LKParams()
    out = np.array(flow, float)
    keyed = np.isfinite(keys).all(axis=2)
    groups: dict = {}
    for lab in range(keys.shape[1]):
        kf = np.flatnonzero(keyed[:, lab])
        for s, e in zip(kf[:-1], kf[1:], strict=False):
            if e - s >= 2:
                groups.setdefault((int(s), int(e)), []).append(lab)
    src = GrayFrames(frames)
    for (s, e), labs in sorted(groups.items()):
        raise_if_cancelled(cancel)
        F, B = _tracks(src, keys, labs, s, e, params)
        w = rstc_weight(np.arange(s, e + 1), s, e)[:, None, None]
        same = np.abs(w * F + (1 - w) * B - out[s : e + 1, labs]).max(axis=(0, 2)) < 1e-3
        bridged = _ensemble(src, keys, labs, s, e, params, F, B)
        src.clear()
        share = _closed_share(F, B, keys[s, labs], keys[e, labs], w[..., 0])[..., None]
        bridged = share * bridged + (1 - share) * out[s : e + 1, labs]
        for j, lab in enumerate(labs):
            if same[j]:  # NaN (LK lost it) compares False: the fill is kept
                out[s + 1 : e, lab] = bridged[1:-1, j]
    return out


def _tracks(src, keys, labs, s, e, params):
    """Forward and backward LK tracks of ``labs`` from keyframe ``s`` to ``e`` and back."""
    from .lk import lk_track

    F, B = np.empty((e - s + 1, len(labs), 2)), np.empty((e - s + 1, len(labs), 2))
    F[0], B[-1] = keys[s, labs], keys[e, labs]
    for u in range(s, e):
        F[u + 1 - s] = lk_track(src[u], src[u + 1], F[u - s], params)[0]
    for u in range(e, s, -1):
        B[u - 1 - s] = lk_track(src[u], src[u - 1], B[u - s], params)[0]
    return F, B


def _closed_share(F, B, start, end, w):
    """Inverse-variance share (n, L) of the closed tracks against RSTC's blend of ``F`` and
    ``B`` (``w``: RSTC weights). Each one's error: its forward and backward tracks' weighted
    disagreement over ``FB_PER_PX`` (the fill's measured rule, :mod:`.flow_confidence`) on top
    of ``FLOW_SIGMA`` for RSTC and ``CLOSED_SIGMA`` for the closed ensemble. Where LK-RSTC's
    tracks agree, the fill keeps much of its weight: closing them then adds as much error as
    it takes away (a probe that slides in bursts: LK's drift is not spread along the path)."""
    t = 4 * w * (1 - w) / fc.FB_PER_PX
    d_rstc = np.hypot(*(F - B).transpose(2, 0, 1)) * t
    d_closed = np.hypot(*(_close(F, end) - _close(B[::-1], start)[::-1]).transpose(2, 0, 1)) * t
    v_r, v_c = FLOW_SIGMA**2 + d_rstc**2, CLOSED_SIGMA**2 + d_closed**2
    return np.nan_to_num(v_r / (v_r + v_c), nan=0.0)


def _bridge(F, B, start, end):
    """Mean of the forward and backward tracks, each closed onto the other keyframe."""
    return 0.5 * (_close(F, end) + _close(B[::-1], start)[::-1])


def _ensemble(src, keys, labs, s, e, params, F, B):
    """The closed tracks of LK windows ``params.win_size`` (forward and backward tracks ``F``,
    ``B``) and ``ENSEMBLE_WINDOWS``, averaged with weights ``1 / (MISS_SIGMA^2 + m^2)``: ``m``
    the RMS of a window's two misses at the keyframes, the cine's own measure of how far that
    window drifts on this label and segment. Windows that stray from the first one's closed
    track by more than ``ENSEMBLE_TOL`` lost the point and are left out."""
    start, end = keys[s, labs], keys[e, labs]
    main = _bridge(F, B, start, end)
    weight = _miss_weight(F, B, start, end)
    total, wsum = weight[None, :, None] * main, np.broadcast_to(weight, main.shape[:2]).copy()
    for win in ENSEMBLE_WINDOWS:
        if win == params.win_size:
            continue
        Fw, Bw = _tracks(src, keys, labs, s, e, replace(params, win_size=win))
        other = _bridge(Fw, Bw, start, end)
        near = (np.hypot(*(other - main).transpose(2, 0, 1)) <= ENSEMBLE_TOL).all(axis=0)
        w = np.where(near, _miss_weight(Fw, Bw, start, end), 0.0)
        total += w[None, :, None] * np.nan_to_num(other)
        wsum += w[None, :]
    return total / wsum[..., None]


def _miss_weight(F, B, start, end) -> np.ndarray:
    """Per label, ``1 / (MISS_SIGMA^2 + m^2)`` with ``m^2`` the mean squared miss of the
    forward track at ``end`` and the backward track at ``start``."""
    m2 = 0.5 * (((F[-1] - end) ** 2).sum(axis=1) + ((B[0] - start) ** 2).sum(axis=1))
    return 1.0 / (MISS_SIGMA**2 + m2)


def _close(track: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``track`` (n, L, 2) from its first row on, its end moved onto ``target`` (L, 2): the
    closure error taken back in proportion to the path length covered."""
    path = np.cumsum(
        np.r_[np.zeros((1, track.shape[1])), np.hypot(*np.diff(track, axis=0).transpose(2, 0, 1))],
        axis=0,
    )
    share = path / np.where(path[-1] > 0, path[-1], 1.0)
    share[:, path[-1] <= 0] = np.linspace(0.0, 1.0, len(track))[:, None]
    return track - share[..., None] * (track[-1] - target)[None]


def _sigma_against(model, flow, flow_conf, ann) -> np.ndarray:
    """Per label, the model's random error on frames nobody annotated, from its disagreement
    with confident flow there: the residual at the annotations flatters a model trained on
    them. ``var(model - flow) - FLOW_SIGMA^2``, at least ``FLOW_SIGMA``; NaN where fewer than
    ``MIN_BIAS_POINTS`` frames compare."""
    ok = (
        np.isfinite(model).all(axis=2)
        & np.isfinite(flow).all(axis=2)
        & ~np.isfinite(ann).all(axis=2)
    )
    if flow_conf is not None:
        ok &= np.nan_to_num(flow_conf) >= 0.5
    d2 = np.where(ok, ((np.nan_to_num(model) - np.nan_to_num(flow)) ** 2).sum(axis=2), 0.0)
    n = ok.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = d2.sum(axis=0) / n - FLOW_SIGMA**2
    return np.where(n >= MIN_BIAS_POINTS, np.sqrt(np.maximum(var, FLOW_SIGMA**2)), np.nan)


@dataclass
class Final:
    """Result of :func:`final_tracks`: positions, confidence, the model's bias and the flags."""

    xy: np.ndarray
    confidence: np.ndarray
    bias: Bias | None
    flags: fc.Flags


def final_tracks(
    frames,
    *,
    window: int,
    annotations: np.ndarray | None = None,
    flow: np.ndarray | None = None,
    flow_confidence: np.ndarray | None = None,
    model: np.ndarray | None = None,
    model_confidence: np.ndarray | None = None,
    correct_bias: bool = True,
    close_flow: bool = True,
    labels=None,
    progress=None,
    cancel=None,
) -> Final:
    """Final tracks (N, L, 2) from annotations, flow and model (any of them may be missing).

    Parameters
    ----------
    frames : sequence of 2-D frames
        The video (for the smoother's optical flow).
    window : int
        Smoother window in frames.
    annotations : (N, L, 2), optional
        Accepted annotations (``manual``/``reviewed``), NaN elsewhere: kept as they are.
    flow, model : (N, L, 2), optional
        The keyframe fill and the model's predictions, with their confidences (N, L).
    correct_bias : bool
        Measure the model's systematic error against the annotations and remove it.
    close_flow : bool
        Remove the LK tracks' closure error at the annotations from the flow
        (:func:`closed_flow`) where the flow is the LK-RSTC fill between them.

    Raises
    ------
    DustrackError
        No source at all, sources of different shapes, or a label with no position anywhere.
    """
    from .smoothing import smooth

    sources = [a for a in (annotations, flow, model) if a is not None]
    if not sources:
        raise DustrackError("final tracks need annotations, flow or model points")
    shape = np.shape(sources[0])
    if any(np.shape(a) != shape for a in sources):
        raise DustrackError(
            f"annotations, flow and model must have the same shape (frames, "
            f"labels, 2); got {[np.shape(a) for a in sources]}"
        )
    ann = np.full(shape, np.nan) if annotations is None else np.asarray(annotations, float)
    if flow is not None and close_flow:
        flow = closed_flow(frames, ann, np.asarray(flow, float), cancel=cancel)
    bias = sigma = None
    if model is not None and correct_bias:
        bias = model_bias(np.asarray(model, float), ann)
        model = bias.correct(np.asarray(model, float))
        sigma = bias.residual
    if model is not None and flow is not None:
        measured = _sigma_against(np.asarray(model, float), flow, flow_confidence, ann)
        sigma = measured if sigma is None else np.fmax(measured, sigma)
    if flow is None and model is None:
        z, c = ann.copy(), np.isfinite(ann).all(axis=2).astype(float)
    else:
        z, c = combine(flow, flow_confidence, model, model_confidence, sigma)
    anchors = np.isfinite(ann).all(axis=2)
    z[anchors], c[anchors] = ann[anchors], 1.0
    xy = smooth(
        frames,
        z,
        window,
        "fusion",
        confidence=c,
        labels=labels,
        anchors=anchors,
        progress=progress,
        cancel=cancel,
    )
    xy[anchors] = ann[anchors]
    return Final(xy, c, bias, fc.flag_summary(xy, c))
