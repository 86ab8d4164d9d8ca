"""A keyframe fill that does not lock onto what the probe carries (method ``robust``).

DUSTrack's LK-RSTC (:mod:`.flow`, method ``dustrack``) is right wherever its forward and
backward tracks agree, and that is most of a calm cine. Where they disagree, something broke:
typically a probe that slid over the tissue faster than LK follows while a shadow column or
reverberation bands, fixed to the probe, stayed still in the image and held the LK window. Such
label segments (keyframe to keyframe; confidence below ``RETRACK_BELOW`` somewhere) are tracked
again, step by step:

1. the image-wide motion of the pair is measured first (:mod:`.probe_motion`: the median of a
   grid of LK vectors, measured again by block matching where the image slides, since LK's
   fall short of the motion as the speckle decorrelates);
2. LK starts from the point moved by that motion (``OPTFLOW_USE_INITIAL_FLOW``) at full
   resolution, so a pattern left behind by a slide is out of its reach; a result that strays
   from the prediction (by more than ``SLIDE_TOL`` in a block-matched slide, where the
   image-wide motion is the better guess; elsewhere by more than ``STEP_TOL`` and
   ``LOCK_SHARE`` of the motion: a lock-on) or looks less like the label's keyframe patch
   than the prediction does is replaced by the prediction, and the track *coasts* on the
   image motion;
3. a coasting track is re-acquired by template matching of the keyframe patch around it once
   the label is visible again, within a radius that grows with the distance coasted as the
   image motion's error does (a match farther off is another structure that looks alike);
4. forward and backward tracks are blended with RSTC weights scaled by each track's own
   reliability (what coasting cost it, and its drift: its miss at the far keyframe grown
   along its path), not by position alone.

The re-tracked segment replaces the LK-RSTC one only where its forward and backward tracks
agree better; calm segments keep DUSTrack's numbers. Confidence is the product of the terms of
:mod:`.flow_confidence`; :func:`retrack` also returns each point's estimated error (the flags:
"likely wrong"), to which :func:`.flow.fill_between` calibrates the confidence.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import Cancelled, raise_if_cancelled
from . import flow_confidence as fc
from ._frames import GrayFrames
from .lk import LKParams, rstc_weight
from .probe_motion import PairMotion, degenerate, grid_points, pair_motion

MEASURE_EVERY = 4  # image-wide motion sampled on every fourth pair during the fill (a slide
# lasts longer: 0.5 s, 10 frames at 20 fps, in the simulator)
RETRACK_BELOW = 0.5  # a segment whose LK-RSTC confidence drops below this is tracked again
STEP_TOL = 0.8  # px: LK may differ this much from the image-motion prediction unchallenged
SLIDE_TOL = 0.3  # px: ... in a slide whose image motion was block-matched (:mod:`.probe_motion`);
# that motion is 0.1-0.2 px off per frame at the labels of the probe cines, a label's own LK
# 0.24-0.56 px (median; its window holds probe-fixed patterns and renewed speckle): LK that
# strays farther from the prediction is noise more often than tissue deforming
LOCK_SHARE = 0.3  # ... and by this share of the image motion before it counts as locked on
COAST = 0.6  # reliability factor per step coasted on the image motion
DRIFT_SIGMA = 1.0  # px: a track's drift that halves its weight in the blend
SEARCH_PX = 8  # radius of the template search when re-acquiring
REACQUIRE_NCC = 0.7  # a template match must reach this NCC to re-acquire
REACQUIRE_SHARE = 0.05  # a re-acquisition may move a coasting track by 1 px + this share of
# the distance it coasted: the error of the block-matched image motion (:mod:`.probe_motion`),
# 0.2 px per 5-8 px frame on the decorrelated slide, with a margin. A match farther away is
# another structure that looks alike: along an aponeurosis (a bright line) the keyframe patch
# matches at NCC > 0.7 wherever the line runs, and with 0.15 such jumps of 3-8 px were most
# re-acquisitions after a slide


class ImageMotion:
    """Image-wide motion per frame pair: every ``MEASURE_EVERY``-th pair is measured during the
    fill's forward visit (:meth:`measure`, on frames already decoded); any other pair when
    first asked for (a slide lasts several frames, so the sampled pairs find it)."""

    def __init__(self):
        self.pairs: dict[int, PairMotion] = {}
        self.src: GrayFrames | None = None

    def measure(self, u: int, prev: np.ndarray, nxt: np.ndarray) -> None:
        if u % MEASURE_EVERY == 0 or degenerate(prev, nxt):  # blank/frozen: always noted
            self.pairs[u] = pair_motion(prev, nxt, grid_points(tuple(prev.shape)))

    def known(self, u: int) -> PairMotion | None:
        """The pair's motion if measured already, else None (reads nothing)."""
        return self.pairs.get(u)

    def __call__(self, u: int) -> PairMotion:
        if u not in self.pairs:
            a = self.src[u]
            self.pairs[u] = pair_motion(a, self.src[u + 1], grid_points(tuple(a.shape)))
        return self.pairs[u]


def retrack(
    frames,
    keys,
    xy,
    conf,
    motion: ImageMotion | None = None,
    params: LKParams = LKParams(),
    cancel=None,
    labels=None,
    error=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Re-track the low-confidence segments of an LK-RSTC fill; returns ``(xy, conf, error,
    notes)``.

    ``xy``/``conf`` are :func:`.flow.fill_between`'s result with method ``dustrack`` on the
    same ``keys`` (N, L, 2), ``error`` its estimated error (N, L; see
    :mod:`.flow_confidence`); they are copied, not changed. ``motion`` holds the image-wide
    motion already measured (frames are read again only for pairs it lacks and for the
    segments tracked again). The returned ``error`` adds the image motion's and the
    neighbours' evidence, and is infinite on frames whose image motion could not be measured.
    """
    xy, conf = np.array(xy, float), np.array(conf, float)
    error = np.full(conf.shape, np.nan) if error is None else np.array(error, float)
    try:
        return _retrack(
            frames, keys, xy, conf, error, motion or ImageMotion(), params, cancel, labels
        )
    except Cancelled:
        raise Cancelled((xy, conf)) from None


def _retrack(frames, keys, xy, conf, error, motion, params, cancel, labels):
    src = GrayFrames(frames)
    motion.src = src
    keyed = np.isfinite(keys).all(axis=2)
    pairs = _sampled(motion, keyed)
    # LK-RSTC tracks that stand still while the image slides agree with each other but not
    # with the image: their confidence says so before anything is compared
    agree, lag = _agreement(xy, pairs)
    conf, error = np.where(keyed, conf, conf * agree), _worse(error, lag)
    for (s, e), labs in _segments_to_retrack(keys, conf).items():
        raise_if_cancelled(cancel)
        if not _slides(pairs, s, e):
            continue  # no slide: the robust track would be LK-RSTC's own
        new_xy, new_c, fb, new_err = _track_group(
            src, motion, keys, np.asarray(labs), s, e, params, cancel
        )
        pairs[s:e] = [motion(u) for u in range(s, e)]  # all measured by the tracking
        agree, lag = _agreement(new_xy, pairs[s:e])
        new_c, evidence, new_err = new_c * agree, fb * agree, _worse(new_err, lag)
        t = slice(s + 1, e)
        for j, lab in enumerate(labs):
            # what the video shows decides: the tracks meet and follow the image motion
            if np.mean(evidence[1:-1, j]) > np.mean(np.nan_to_num(conf[t, lab])):
                xy[t, lab], conf[t, lab] = new_xy[1:-1, j], new_c[1:-1, j]
                error[t, lab] = new_err[1:-1, j]
        src.clear()
    conf = np.where(keyed, conf, conf * fc.neighbour_factor(xy))
    error = _worse(error, fc.neighbour_error(xy))
    for u, m in motion.pairs.items():  # blank or featureless: nothing says where points are
        if not m.ok and not m.frozen:
            error[u : u + 2][np.isfinite(error[u : u + 2])] = np.inf
    return xy, conf, error, _motion_notes(motion.pairs, labels, keys)


def _worse(error, more):
    """The larger of two estimated errors where ``error`` is estimated (NaN stays NaN)."""
    return np.where(np.isfinite(error), np.fmax(error, more), error)


def _sampled(motion, keyed) -> list:
    """The pairs' image-wide motion measured so far over the keyframes' span (None: not
    measured). Without a forward visit (motion measured by nobody) every other pair is
    measured here, reading its two frames."""
    n = len(keyed)
    rows = np.flatnonzero(keyed.any(axis=1))
    pairs: list = [None] * max(n - 1, 0)
    if len(rows) < 2:
        return pairs
    for u in range(int(rows[0]), int(rows[-1])):
        if u % MEASURE_EVERY == 0 and motion.known(u) is None:
            motion(u)
            motion.src.cache.pop(u, None)
        pairs[u] = motion.known(u)
    motion.src.clear()
    return pairs


def _agreement(xy, pairs) -> tuple[np.ndarray, np.ndarray]:
    """:func:`.flow_confidence.image_motion_factor` and ``image_motion_error`` of ``xy`` with
    the measured ``pairs``."""
    expected = np.zeros((max(len(xy) - 1, 0),) + xy.shape[1:])
    slide = np.zeros(len(expected), bool)
    for u, m in enumerate(pairs[: len(expected)]):
        if m is not None and m.ok and np.hypot(*m.shift) > fc.SLIDE_PX:
            slide[u] = True
            expected[u] = m.predict(xy[u]) - xy[u]
    return (
        fc.image_motion_factor(xy, expected, slide),
        fc.image_motion_error(xy, expected, slide),
    )


def _slides(pairs, s: int, e: int) -> bool:
    """Whether the image moves like a probe slide, or cannot be measured, on a measured pair
    of s..e (the pairs in between are measured when the segment is tracked again)."""
    return any(m is not None and (not m.ok or np.hypot(*m.shift) > fc.SLIDE_PX) for m in pairs[s:e])


def _segments_to_retrack(keys, conf) -> dict:
    """``{(s, e): [labels]}`` of keyframe segments whose confidence drops below the bar
    (``conf`` already includes the agreement with the image-wide motion)."""
    todo: dict = {}
    is_key = np.isfinite(keys).all(axis=2)
    for lab in range(keys.shape[1]):
        kf = np.flatnonzero(is_key[:, lab])
        for s, e in zip(kf[:-1], kf[1:], strict=False):
            if e - s >= 2 and np.nan_to_num(conf[s + 1 : e, lab]).min() < RETRACK_BELOW:
                todo.setdefault((int(s), int(e)), []).append(lab)
    return todo


def _track_group(src, motion, keys, labs, s, e, params, cancel):
    """Forward and backward robust tracks of ``labs`` over keyframes ``s..e``, blended
    (:func:`_blend`'s four arrays)."""
    n = e - s + 1
    F, B = np.full((n, len(labs), 2), np.nan), np.full((n, len(labs), 2), np.nan)
    rf, rb = np.zeros((n, len(labs))), np.zeros((n, len(labs)))
    F[0], B[-1], rf[0], rb[-1] = keys[s, labs], keys[e, labs], 1.0, 1.0
    tf, tb = fc.templates(src[s], F[0]), fc.templates(src[e], B[-1])
    coast_f, coast_b = np.zeros(len(labs)), np.zeros(len(labs))  # distance coasted
    re_f = _moving_templates(src[s + 1], F[0], tf, motion(s))
    re_b = _moving_templates(src[e - 1], B[-1], tb, motion(e - 1).inverse())
    for u in range(s, e):
        raise_if_cancelled(cancel)
        F[u + 1 - s], rf[u + 1 - s], coast_f = _step(
            src[u], src[u + 1], F[u - s], rf[u - s], motion(u), tf, re_f, coast_f, params
        )
    for u in range(e, s, -1):
        raise_if_cancelled(cancel)
        B[u - 1 - s], rb[u - 1 - s], coast_b = _step(
            src[u],
            src[u - 1],
            B[u - s],
            rb[u - s],
            motion(u - 1).inverse(),
            tb,
            re_b,
            coast_b,
            params,
        )
    return _blend(src, F, B, (rf, rb), (tf, tb), s, e)


def _moving_templates(img_next, pts, tmpl, m: PairMotion) -> np.ndarray:
    """Templates fit for re-acquiring: NaN where the keyframe patch shows the probe's pattern.

    When the image moved across the keyframe's neighbouring pair, the label's patch must be
    found moved with it; a patch that matches better where it was cut is something fixed to
    the probe (a shadow edge, reverberation), and matching it later would lock onto that.
    """
    out = tmpl.copy()
    if not m.ok or np.hypot(*m.shift) <= fc.SLIDE_PX:
        return out
    static = fc.patch_ncc(img_next, pts, tmpl)
    moved = fc.patch_ncc(img_next, m.predict(pts), tmpl)
    out[~(np.nan_to_num(moved, nan=-1) > np.nan_to_num(static, nan=-1))] = np.nan
    return out


def _step(a, b, p, rel, m: PairMotion, tmpl, reacq, coasting, params):
    """One step of a robust track from image ``a`` to ``b`` (image-wide motion ``m``):
    (new points, reliability, distance coasted so far: 0 where the track is not coasting)."""
    p = np.asarray(p, float)
    live = np.isfinite(p).all(axis=1)
    if not m.ok:  # no image motion measured: plain LK, trusted less
        new = _lk(a, b, p, None, params.win_size, params.max_level, params)
        new, coasting = _reacquire(b, new, reacq, coasting)
        return new, np.where(live & np.isfinite(new[:, 0]), rel * COAST, 0.0), coasting
    guess = m.predict(p)
    meas = _lk(a, b, p, guess, params.win_size, 0, params)
    dev = np.hypot(*(meas - guess).T)
    # a lock-on leaves the track behind the image motion
    tol = np.maximum(STEP_TOL, LOCK_SHARE * np.hypot(*(guess - p).T))
    if m.matched:  # a slide, its motion block-matched: a label's own LK is the worse guess
        tol = np.full(len(p), SLIDE_TOL)
    locked = ~(dev <= tol)  # NaN too
    doubt = ~locked & (dev > np.minimum(STEP_TOL, tol))
    if doubt.any():
        ncc_m, ncc_g = fc.patch_ncc(b, meas, tmpl), fc.patch_ncc(b, guess, tmpl)
        locked |= doubt & ~(np.nan_to_num(ncc_m, nan=-1) > np.nan_to_num(ncc_g, nan=-1) + 0.1)
    new = np.where(locked[:, None], guess, meas)
    new, after = _reacquire(b, new, reacq, np.where(locked, 0.0, coasting))
    step = np.nan_to_num(np.hypot(*(guess - p).T))
    coasting = np.where(
        live & (locked | (after > 0)), np.where(locked, coasting, after) + step + 1e-6, 0.0
    )
    new_rel = np.where(
        locked, rel * COAST, np.where(coasting > 0, rel, np.minimum(rel + 0.25, 1.0))
    )
    return np.where(live[:, None], new, np.nan), np.where(live, new_rel, 0.0), coasting


def _lk(a, b, p, guess, win, level, params):
    """LK of points ``p`` (NaN rows skipped), optionally from initial guesses; NaN where lost."""
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p).all(axis=1)
    if guess is not None:
        ok &= np.isfinite(guess).all(axis=1)
    if not ok.any():
        return out
    pts = p[ok].astype(np.float32).reshape(-1, 1, 2)
    kw = dict(winSize=(win, win), maxLevel=level, criteria=params.criteria)
    if guess is None:
        new, st, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, **kw)
    else:
        init = guess[ok].astype(np.float32).reshape(-1, 1, 2).copy()
        new, st, _ = cv2.calcOpticalFlowPyrLK(
            a, b, pts, init, flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw
        )
    new = new.reshape(-1, 2).astype(float)
    h, w = a.shape
    good = (
        (st.ravel() > 0)
        & (new[:, 0] >= 0)
        & (new[:, 0] <= w - 1)
        & (new[:, 1] >= 0)
        & (new[:, 1] <= h - 1)
    )
    new[~good] = np.nan
    out[ok] = new
    return out


def _reacquire(img, pts, tmpl, coasting):
    """Coasting points jump to the best match of their keyframe patch nearby, if it is good
    (templates that are NaN, see :func:`_moving_templates`, are never matched)."""
    if not (coasting > 0).any():
        return pts, coasting
    pts, coasting = pts.copy(), coasting.copy()
    for i in np.flatnonzero((coasting > 0) & np.isfinite(pts).all(axis=1)):
        found = _match(img, pts[i], tmpl[i], 1.0 + REACQUIRE_SHARE * coasting[i])
        if found is not None:
            pts[i], coasting[i] = found, 0.0
    return pts, coasting


def _match(img, p, tmpl, radius=SEARCH_PX):
    """Sub-pixel position of the best NCC match of ``tmpl`` within ``radius`` (at most
    ``SEARCH_PX``) of ``p``."""
    if not np.isfinite(tmpl).all():
        return None
    found, best, (j, i) = fc.match_template(img, p, tmpl, SEARCH_PX)
    if best < REACQUIRE_NCC or np.hypot(i, j) > radius:
        return None
    return found


def _blend(src, F, B, rels, tmpl, s, e):
    """RSTC blend weighted by the tracks' reliabilities: ``rels`` (forward, backward: what
    coasting cost) and each track's drift (:func:`_drift`: its miss at the far keyframe grown
    along its path; it follows the track's actual error, correlation 0.84-0.88 on the probe
    cines) as an inverse variance ``1 / (1 + (drift / DRIFT_SIGMA)^2)``. Returns positions,
    their confidence, the forward-backward agreement alone and the estimated error (px: the
    tracks' distance plus their drift, blended alike)."""
    (rf, rb), (tf, tb) = rels, tmpl
    t = np.arange(s, e + 1)
    w = rstc_weight(t, s, e)[:, None]
    drift_f, drift_b = _drift(F, B[-1]), _drift(B[::-1], F[0])[::-1]
    # each track's own drift, measured by the cine at the far keyframe, is its reliability too
    wf = w * rf / (1 + (np.nan_to_num(drift_f) / DRIFT_SIGMA) ** 2)
    wb = (1 - w) * rb / (1 + (np.nan_to_num(drift_b) / DRIFT_SIGMA) ** 2)
    f_ok, b_ok = np.isfinite(F).all(axis=2), np.isfinite(B).all(axis=2)
    wf, wb = np.where(f_ok, wf, 0.0), np.where(b_ok, wb, 0.0)
    total = wf + wb
    with np.errstate(invalid="ignore", divide="ignore"):
        a = np.where(total > 0, wf / total, np.nan)
    xy = a[..., None] * np.nan_to_num(F) + (1 - a[..., None]) * np.nan_to_num(B)
    xy[~np.isfinite(a)] = np.nan
    fb = np.where(
        f_ok & b_ok, fc.fb_factor(np.hypot(*(F - B).transpose(2, 0, 1)), 4 * w * (1 - w)), 0.5
    )
    near_start = (t - s <= e - t)[:, None]
    ncc = np.empty(xy.shape[:2])
    for k, i in enumerate(t):
        img = src[i]
        ncc[k] = np.where(near_start[k], fc.patch_ncc(img, xy[k], tf), fc.patch_ncc(img, xy[k], tb))
    rel = np.where(total > 0, (wf * rf + wb * rb) / np.where(total > 0, total, 1), 0.0)
    conf = fb * fc.appearance_factor(ncc) * np.clip(rel, 0.0, 1.0)
    found = np.isfinite(xy).all(axis=2)
    apart = np.hypot(*(F - B).transpose(2, 0, 1)) * 4 * w * (1 - w) / fc.FB_PER_PX
    lone = fc.LOST_ERR_PX * np.where(f_ok, 1 - w, w)
    drift = a * drift_f + (1 - a) * drift_b
    err = np.where(f_ok & b_ok, apart, lone) + np.nan_to_num(drift)
    return xy, np.where(found, conf, 0.0), np.where(found, fb, 0.0), np.where(found, err, np.nan)


def _drift(track, target) -> np.ndarray:
    """Estimated drift (n, L) of a track along its way: its miss at the other keyframe
    (``target``), grown in proportion to the path covered (the image motion it coasted on
    and LK both err in proportion to the motion followed); NaN where it was lost."""
    steps = np.hypot(*np.diff(track, axis=0).transpose(2, 0, 1))
    path = np.concatenate([np.zeros((1, track.shape[1])), np.cumsum(steps, axis=0)])
    miss = np.hypot(*(track[-1] - target).T)
    with np.errstate(invalid="ignore", divide="ignore"):
        return miss * np.where(path[-1] > 0, path / path[-1], 0.0)


def _motion_notes(pairs: dict, labels, keys) -> list[str]:
    """Messages about frames whose image-wide motion could not be measured."""
    notes = []
    frozen = sorted(u + 1 for u, m in pairs.items() if m.frozen)
    failed = sorted(u for u, m in pairs.items() if not m.ok and not m.frozen)
    if frozen:
        notes.append(
            f"frame(s) {_frames_text(frozen)} repeat the previous frame (frozen video): "
            "no motion measured there"
        )
    if failed:
        notes.append(
            f"no image-wide motion could be measured from frame(s) {_frames_text(failed)}"
            " (blank or featureless): tracks there are plain LK, flagged"
        )
    empty = [i for i in range(keys.shape[1]) if not np.isfinite(keys[:, i]).all(axis=1).any()]
    if empty:
        names = [repr(labels[i]) if labels is not None else f"#{i}" for i in empty]
        notes.append(f"label(s) {', '.join(names)} have no keyframe: nothing filled")
    return notes


def _frames_text(frames) -> str:
    return ", ".join(map(str, frames[:8])) + (" ..." if len(frames) > 8 else "")
