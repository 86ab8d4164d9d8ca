"""How far to trust a flow result, from what the video shows.

Each term is a factor in 0..1 per point and frame; the confidence of a flow result is their
product (see :func:`reliability`):

* **forward-backward**: the forward track from the earlier keyframe and the backward track from
  the later one should meet; their distance, weighted to count fully mid-way (the blend is
  anchored at the keyframes), costs ``exp(-d^2 / (2 FB_SCALE^2))``.
* **appearance**: the normalised cross-correlation (NCC) of the patch at the tracked position
  with the label's patch on its keyframe(s). A track that drifted onto other tissue, or onto a
  probe-fixed pattern (shadow, reverberation), no longer looks like the label.
* **neighbours**: a label whose frame-to-frame step disagrees with every other label's step by
  far more than they disagree among themselves is suspect (labels of one structure move
  together).
* **image motion**: during a probe slide (image-wide motion above ``SLIDE_PX``) a track that
  stays behind the image has locked onto something fixed to the probe.

**Flags mean "likely wrong".** The confidence above is a weight (how much a later stage should
lean on a point); it falls well before a point is wrong (forward and backward tracks that
disagree by 3 px mid-way still blend to ~1 px). What the user is told rests on an *estimated
error* in pixels per point instead, the largest of what each cue implies (measured on the
simulator's cines against ground truth, ``benchmarks/bench_robust.py --flags``):

* forward-backward: the blend's error is about a third of the tracks' weighted distance
  (``FB_PER_PX``); a point with one track lost: ``LOST_ERR_PX`` x the lost track's weight;
* image motion (slides): the part of the expected step a track did not follow;
* neighbours: how far a label's step strays beyond what the labels' steps differ among
  themselves (:func:`neighbour_error`);
* drift (robust fill, segments tracked again): each track's miss at the far keyframe, grown
  along the path it covered, is added to the forward-backward term: the cine's own measure
  of how well coasting on the image motion and LK held there;
* frames where no image-wide motion could be measured (blank): unknown, flagged.

A point is flagged when its estimated error exceeds ``WRONG_PX``; :func:`calibrate` then sets
its confidence below ``FLAG_BELOW`` (the lower, the larger the error) and lifts every other
point's to at least ``FLAG_BELOW``, so that everything reading a stored confidence (review
ranking, training, the smoother's report) agrees with the flags. :func:`flag_summary` turns a
confidence array into what the user is told: how many points and which frames fall below
the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

FB_SCALE = 2.0  # px: forward-backward disagreement that costs ~40 % confidence
TEMPLATE_HALF = 10  # px: the appearance patch is (2 h + 1) squared
NCC_GOOD = 0.5  # NCC at and above which appearance costs nothing
NCC_FLOOR = 0.3  # the appearance factor never goes below this (speckle decorrelates anyway)
SLIDE_PX = 2.0  # px/frame: image-wide motion above this is a probe slide
FLAG_BELOW = 0.5  # confidence below which a point is flagged for review
WRONG_PX = 2.0  # px: estimated error above which a point is likely wrong (flagged)
FB_PER_PX = 3.0  # weighted forward-backward distance per pixel of the blend's error
LOST_ERR_PX = 4.0  # px: estimated error of a lone surviving track, times the lost one's weight
NEIGHBOUR_SLACK = 1.5  # px: a label's step may stray this much beyond 3x the labels' spread


def templates(img: np.ndarray, points: np.ndarray, half: int = TEMPLATE_HALF) -> np.ndarray:
    """Patches (L, 2 h + 1, 2 h + 1) float32 around ``points`` (L, 2); NaN rows give NaN."""
    size = 2 * half + 1
    out = np.full((len(points), size, size), np.nan, np.float32)
    for i, p in enumerate(np.asarray(points, float)):
        if np.isfinite(p).all():
            out[i] = cv2.getRectSubPix(img, (size, size), (float(p[0]), float(p[1])))
    return out


def patch_ncc(img: np.ndarray, points: np.ndarray, tmpl: np.ndarray) -> np.ndarray:
    """NCC (L,) of the patches of ``img`` at ``points`` with templates ``tmpl``; NaN if unknown."""
    half = tmpl.shape[1] // 2
    out = np.full(len(tmpl), np.nan)
    known = np.isfinite(np.asarray(points, float)).all(axis=1) & np.isfinite(tmpl).all(axis=(1, 2))
    if not known.any():
        return out
    here = templates(img, np.asarray(points, float)[known], half)
    a = here - here.mean(axis=(1, 2), keepdims=True)
    b = tmpl[known] - tmpl[known].mean(axis=(1, 2), keepdims=True)
    den = np.sqrt((a * a).sum(axis=(1, 2)) * (b * b).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        out[known] = np.where(den > 1e-6, (a * b).sum(axis=(1, 2)) / den, np.nan)
    return out


def match_template(img: np.ndarray, centre, tmpl: np.ndarray, search: int):
    """Best NCC match of ``tmpl`` in ``img`` within ``search`` px of ``centre`` (x, y):
    ``(position (2,), its NCC, offset (dx, dy) in whole px from centre)``; sub-pixel by
    parabola fits, except on the border of the search (the peak may lie farther off)."""
    half = tmpl.shape[0] // 2
    size = 2 * (half + search) + 1
    region = cv2.getRectSubPix(img, (size, size), (float(centre[0]), float(centre[1])))
    score = cv2.matchTemplate(
        region.astype(np.float32), tmpl.astype(np.float32), cv2.TM_CCOEFF_NORMED
    )
    _, best, _, (j, i) = cv2.minMaxLoc(score)
    h, w = score.shape
    dx = _parabola(score[i, j - 1], score[i, j], score[i, j + 1]) if 0 < j < w - 1 else 0.0
    dy = _parabola(score[i - 1, j], score[i, j], score[i + 1, j]) if 0 < i < h - 1 else 0.0
    pos = np.array([centre[0] + j + dx - search, centre[1] + i + dy - search])
    return pos, float(best), (j - search, i - search)


def _parabola(m1: float, c: float, p1: float) -> float:
    """Sub-pixel offset of a peak ``c`` between neighbours ``m1`` and ``p1``."""
    den = m1 - 2 * c + p1
    return 0.0 if abs(den) < 1e-9 else float(np.clip(0.5 * (m1 - p1) / den, -0.5, 0.5))


def appearance_factor(ncc) -> np.ndarray:
    """NCC -> 0..1: 1 at ``NCC_GOOD`` and above, linear down to ``NCC_FLOOR`` at NCC <= 0."""
    ncc = np.nan_to_num(np.asarray(ncc, float), nan=0.0)
    return NCC_FLOOR + (1 - NCC_FLOOR) * np.clip(ncc / NCC_GOOD, 0.0, 1.0)


def fb_factor(distance, weight=1.0) -> np.ndarray:
    """Forward-backward term of a distance (px) counted with ``weight`` (``4 w (1 - w)``)."""
    d = np.asarray(distance, float) * weight
    return np.where(np.isfinite(d), np.exp(-0.5 * (np.nan_to_num(d) / FB_SCALE) ** 2), 0.0)


def image_motion_factor(xy: np.ndarray, expected: np.ndarray, slide: np.ndarray) -> np.ndarray:
    """Agreement (N, L) of tracks ``xy`` (N, L, 2) with the image-wide motion in slides.

    ``expected`` (N - 1, L, 2) is the step the image-wide motion predicts for each point and
    ``slide`` (N - 1,) marks the pairs where the image slides (motion above ``SLIDE_PX``). There,
    a step that went a share ``p`` of the expected step's way costs ``min(1, p / 0.5)^2`` on both
    frames of the pair (a track that stands still while the image slides has locked onto the
    probe; tissue that deforms still moves); elsewhere the factor is 1.
    """
    followed = _followed(xy, expected, slide)
    if followed is None:
        return np.ones(np.shape(xy)[:2])
    f = np.where(np.asarray(slide, bool)[:, None], followed**2, 1.0)
    return _on_both_frames(f, 1.0, np.minimum)


def _followed(xy, expected, slide):
    """Per slid pair and label, ``min(1, p / 0.5)`` of the share ``p`` of the expected step a
    track went (N - 1, L); None without a slide."""
    xy, slide = np.asarray(xy, float), np.asarray(slide, bool)
    if len(xy) < 2 or not slide.any():
        return None
    expected = np.asarray(expected, float)
    share = (np.diff(xy, axis=0) * expected).sum(axis=2) / np.maximum(
        (expected**2).sum(axis=2), 1e-12
    )
    return np.clip(np.nan_to_num(share, nan=1.0) / 0.5, 0.0, 1.0)


def _step_deviation(xy: np.ndarray):
    """Per frame pair and label, the step's distance from the labels' median step (N - 1, L)
    and the scale it is judged by: 3x the labels' median deviation + ``NEIGHBOUR_SLACK``."""
    import warnings

    step = np.diff(xy, axis=0)  # (N-1, L, 2)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(step, axis=1, keepdims=True)
        dev = np.hypot(*(step - med).transpose(2, 0, 1))
        typical = np.nanmedian(dev, axis=1, keepdims=True)
    return np.nan_to_num(dev), 3.0 * np.nan_to_num(typical) + NEIGHBOUR_SLACK


def _on_both_frames(per_pair: np.ndarray, fill: float, how) -> np.ndarray:
    """(N - 1, L) values of frame pairs -> (N, L) per frame, combined over both pairs."""
    out = np.full((len(per_pair) + 1,) + per_pair.shape[1:], fill)
    out[1:] = how(out[1:], per_pair)
    out[:-1] = how(out[:-1], per_pair)
    return out


def neighbour_factor(xy: np.ndarray) -> np.ndarray:
    """Agreement (N, L) of each label's steps with the other labels' (1 with < 3 labels).

    The deviation of a label's step from the median step of all labels is compared with the
    labels' typical deviation on that frame pair (plus ``NEIGHBOUR_SLACK``): a label that moves
    alone, by far more than the others differ among themselves, loses confidence on both
    frames of the pair.
    """
    xy = np.asarray(xy, float)
    if xy.shape[1] < 3 or len(xy) < 2:
        return np.ones(xy.shape[:2])
    dev, scale = _step_deviation(xy)
    return _on_both_frames(np.exp(-0.5 * (dev / scale) ** 2), 1.0, np.minimum)


def neighbour_error(xy: np.ndarray) -> np.ndarray:
    """Estimated error (N, L, px) from the neighbours: how far a label's step strays beyond
    the scale of :func:`neighbour_factor` (0 with < 3 labels)."""
    xy = np.asarray(xy, float)
    if xy.shape[1] < 3 or len(xy) < 2:
        return np.zeros(xy.shape[:2])
    dev, scale = _step_deviation(xy)
    return _on_both_frames(np.maximum(dev - scale, 0.0), 0.0, np.maximum)


def image_motion_error(xy: np.ndarray, expected: np.ndarray, slide: np.ndarray) -> np.ndarray:
    """Estimated error (N, L, px) from the image-wide motion: in slides, the part of the
    expected step a track left undone, counted from half of it (tissue deforms; a track that
    stands still while the image slides lags by the whole step): ``|expected| (1 - min(1, p /
    0.5))``; 0 elsewhere."""
    followed = _followed(xy, expected, slide)
    if followed is None:
        return np.zeros(np.shape(xy)[:2])
    lag = np.hypot(*np.asarray(expected, float).transpose(2, 0, 1)) * (1 - followed)
    return _on_both_frames(np.where(np.asarray(slide, bool)[:, None], lag, 0.0), 0.0, np.maximum)


def calibrate(conf: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Confidence (N, L) that agrees with the flags: where ``error`` (px, NaN: not estimated,
    the confidence is kept) exceeds ``WRONG_PX`` it is below ``FLAG_BELOW`` (``FLAG_BELOW x
    WRONG_PX / error`` at most), elsewhere at least ``FLAG_BELOW``."""
    conf = np.asarray(conf, float)
    error = np.asarray(error, float)
    known = ~np.isnan(error) & (conf > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = FLAG_BELOW * WRONG_PX / np.where(known, error, 1.0)
    wrong = known & (error > WRONG_PX)
    out = np.where(wrong, np.minimum(conf, cap), conf)
    return np.where(known & ~wrong, np.maximum(conf, FLAG_BELOW), out)


@dataclass
class Flags:
    """What a stage tells the user about unreliable points.

    Attributes
    ----------
    points : int
        Points (frame, label) with a position and a confidence below the threshold.
    frames : ndarray
        Frames holding at least one such point, sorted.
    messages : list of str
        Problems with the video itself (blank or frozen frames, no image-wide motion).
    """

    points: int = 0
    frames: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    messages: list = field(default_factory=list)

    def line(self, what: str = "flow") -> str:
        """One line for the user, e.g. ``flow: 12 unreliable point(s) on 9 frame(s) (...)``."""
        shown = ", ".join(map(str, self.frames[:8])) + (" ..." if len(self.frames) > 8 else "")
        text = f"{what}: {self.points} unreliable point(s) on {len(self.frames)} frame(s)" + (
            f" ({shown})" if len(self.frames) else ""
        )
        return "; ".join([text] + list(self.messages))


def flag_summary(
    xy: np.ndarray, confidence: np.ndarray, threshold: float = FLAG_BELOW, messages=()
) -> Flags:
    """Points with a position and a confidence below ``threshold``, and their frames."""
    have = np.isfinite(np.asarray(xy, float)).all(axis=2)
    low = have & (np.nan_to_num(np.asarray(confidence, float)) < threshold)
    return Flags(int(low.sum()), np.flatnonzero(low.any(axis=1)), list(messages))
