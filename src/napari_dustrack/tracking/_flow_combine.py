"""From the forward and backward LK tracks of :mod:`._flow_engine` to positions and confidence.

The blend is RSTC (Magana-Salgado et al. 2023): ``w F + (1 - w) B`` with
:func:`~.lk.rstc_weight`, so the result passes exactly through both keyframes.

Confidence (0..1, documented choices):

* Keyframes: 1.
* Between keyframes, both tracks alive: ``exp(-d_eff**2 / (2 FB_SCALE**2)) * lk_factor`` with
  ``d_eff = |F - B| * 4 w (1 - w)``: the forward-backward disagreement, weighted so that it counts
  fully mid-way and not at the keyframes, where the blend is anchored. ``lk_factor =
  exp(-(err / ERR_SCALE)**2 / 2)`` of the mean LK residual ``err`` (mean absolute grey-level
  difference in the window) of the two tracks.
* Only one track alive (LK lost the other): the survivor is used, with confidence
  ``LOST_ONE_FACTOR * weight_of_survivor * lk_factor``, so it fades out away from the survivor's
  own keyframe and never exceeds 0.5.
* Beyond the keyframes (``extend``) and in :func:`.flow.propagate`: each step is checked by
  tracking the new position back one frame; the check errors accumulate as a random walk
  ``D = sqrt(sum e_u**2)`` and the confidence is ``exp(-D**2 / (2 FB_SCALE**2)) * lk_factor``.
  A step whose check is lost counts as ``e_u = FB_SCALE``.
* Lost points (LK status 0, NaN, or outside the image) are NaN with confidence 0, and stay lost.

Besides the confidence (a weight), each point between keyframes gets an *estimated error* in
pixels (:mod:`.flow_confidence`, "likely wrong"): ``d_eff / FB_PER_PX`` with both tracks, and
``LOST_ERR_PX * (1 - weight_of_survivor)`` with one. :func:`combine` appends it to
``plan.error_out`` when that is a list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import flow_confidence as fc
from .lk import rstc_weight

if TYPE_CHECKING:
    from ._flow_engine import Plan, Tracks

FB_SCALE = 2.0  # pixels: forward-backward disagreement that costs ~40% confidence
ERR_SCALE = 40.0  # grey levels: mean LK residual that costs ~40% confidence
LOST_ONE_FACTOR = 0.5  # ceiling on the confidence of a single surviving track
RSTC_EPS = 0.01


def _lk_factor(err) -> np.ndarray:
    err = np.asarray(err, dtype=np.float64)
    finite = np.isfinite(err)
    return np.where(finite, np.exp(-0.5 * (np.where(finite, err, 0.0) / ERR_SCALE) ** 2), 0.0)


def combine(plan: Plan, st: Tracks) -> tuple[np.ndarray, np.ndarray]:
    """``(xy (n, L, 2), confidence (n, L))`` from the tracks computed so far (see above)."""
    n, n_labels = plan.is_key.shape
    xy = np.full((n, n_labels, 2), np.nan)
    conf = np.zeros((n, n_labels))
    drift2 = np.full((n, n_labels), np.nan)
    est = np.full((n, n_labels), np.nan)
    for lab in np.flatnonzero(plan.active):
        _combine_rstc(plan, st, lab, xy, conf, est)
        _combine_extension(plan, st, lab, xy, conf, drift2)
        keyed = plan.is_key[:, lab]
        xy[keyed, lab] = plan.keys[keyed, lab]
        conf[keyed, lab] = 1.0
    lost = ~np.isfinite(xy).all(axis=2)
    xy[lost] = np.nan
    conf[lost] = 0.0
    if plan.drift_out is not None:
        plan.drift_out.append(drift2)
    if plan.error_out is not None:
        est[lost] = np.nan
        plan.error_out.append(est)
    return xy, np.clip(conf, 0.0, 1.0)


def _combine_rstc(plan, st, lab, xy, conf, est) -> None:
    key_frames = np.flatnonzero(plan.is_key[:, lab])
    for s, e in zip(key_frames[:-1], key_frames[1:], strict=False):
        if e - s < 2:
            continue
        t = np.arange(s + 1, e)
        w = rstc_weight(t, s, e, RSTC_EPS)
        F, B = st.F[t, lab], st.B[t, lab]
        done = st.done_f[t, lab] & st.done_b[t, lab]
        f_ok = np.isfinite(F).all(axis=1) & done
        b_ok = np.isfinite(B).all(axis=1) & done
        both = f_ok & b_ok
        blend = w[:, None] * F + (1 - w[:, None]) * B
        d_eff = np.hypot(*(F - B).T) * 4 * w * (1 - w)
        err = 0.5 * (st.err_f[t, lab] + st.err_b[t, lab])
        c_both = np.exp(-0.5 * (d_eff / FB_SCALE) ** 2) * _lk_factor(err)
        c_f = LOST_ONE_FACTOR * w * _lk_factor(st.err_f[t, lab])
        c_b = LOST_ONE_FACTOR * (1 - w) * _lk_factor(st.err_b[t, lab])
        single = np.where(f_ok[:, None], F, np.where(b_ok[:, None], B, np.nan))
        out = np.where(both[:, None], blend, single)
        c = np.where(both, c_both, np.where(f_ok, c_f, np.where(b_ok, c_b, 0.0)))
        xy[t, lab] = out
        conf[t, lab] = c
        lost_err = fc.LOST_ERR_PX * np.where(f_ok, 1 - w, w)
        est[t, lab] = np.where(both, d_eff / fc.FB_PER_PX, np.where(f_ok | b_ok, lost_err, np.nan))


def _combine_extension(plan, st, lab, xy, conf, drift2) -> None:
    first, last, lo, hi = (int(a[lab]) for a in (plan.first, plan.last, plan.lo, plan.hi))
    d0 = 0.0 if plan.drift0 is None else float(plan.drift0[lab])
    drift2[first, lab] = d0 if first == last else np.nan
    if hi > last:  # forward extension: frames last+1..hi, steps last..hi-1
        t = np.arange(last + 1, hi + 1)
        d2 = d0 + np.cumsum(st.check_f[last:hi, lab] ** 2)  # NaN once a check is missing
        _extension_rows(st.F, st.done_f, st.err_f, t, lab, d2, xy, conf, drift2)
    if lo < first:  # backward extension: frames lo..first-1, steps first-1 down to lo
        t = np.arange(lo, first)
        d2 = d0 + np.cumsum(st.check_b[lo:first, lab][::-1] ** 2)[::-1]
        _extension_rows(st.B, st.done_b, st.err_b, t, lab, d2, xy, conf, drift2)


def _extension_rows(track, done, err, t, lab, d2, xy, conf, drift2) -> None:
    """Rows of a one-sided track, confidence from the accumulated squared drift ``d2``."""
    ok = done[t, lab] & np.isfinite(d2)
    c = np.exp(-0.5 * np.nan_to_num(d2) / FB_SCALE**2) * _lk_factor(err[t, lab])
    xy[t, lab] = np.where(ok[:, None], track[t, lab], np.nan)
    conf[t, lab] = np.where(ok, c, 0.0)
    drift2[t, lab] = np.where(ok, d2, np.nan)
