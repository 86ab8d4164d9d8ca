"""Lucas-Kanade on small crops around the points instead of whole frames.

OpenCV's Python binding cannot take a pre-built pyramid, so every ``calcOpticalFlowPyrLK``
call builds the pyramids (and the Scharr derivatives) of both images it is given. On a
1080p frame that dominates the cost of a call. LK only ever reads pixels inside its window
(``win_size`` at each pyramid level) around each point, so running it on a crop that holds
those windows with room to spare gives the same numbers as the whole frame, provided the crop
starts on a multiple of ``2 ** max_level`` (so every pyramid level samples the same pixels)
and the windows never reach the crop's (reflected) border. Crops clipped by the image border
end at the same border as the full frame does.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import cv2
import numpy as np

from ..lk import LKParams, to_gray_u8


def crop_margin(params: LKParams, motion: float = 32.0) -> int:
    """Pixels to keep around a point so LK on the crop reads what it reads on the full frame.

    At the coarsest level the window reaches ``win_size // 2`` pixels (+1 for interpolation,
    +1 for the Scharr derivative, +2 for the rows ``pyrDown`` fills from the reflected border);
    scaled back to full resolution, plus the largest motion per frame we budget for.
    """
    scale = 2**params.max_level
    return int(scale * (params.win_size // 2 + 4) + motion)


def point_boxes(
    groups: list[np.ndarray], shape: tuple[int, int], margin: int, align: int
) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """Merge point groups into crop boxes ``(y0, y1, x0, x1)`` with the member group indices.

    Each group (e.g. the points of one label) gets the box around its points plus ``margin``;
    overlapping boxes are merged (repeatedly, as a merged box may reach a third) so each pixel
    is read by one LK call at most. Box starts are aligned down to ``align`` (the pyramid
    scale) and boxes are clipped to the image.
    """
    if not groups:
        return []
    if all(len(g) == len(groups[0]) for g in groups):
        stacked = np.stack(groups)
        with quiet_nan():
            lo, hi = np.nanmin(stacked, axis=1), np.nanmax(stacked, axis=1)
    else:
        lo = np.array(
            [np.nanmin(g, axis=0) if np.isfinite(g).any() else [np.nan] * 2 for g in groups]
        )
        hi = np.array(
            [np.nanmax(g, axis=0) if np.isfinite(g).any() else [np.nan] * 2 for g in groups]
        )
    keep = np.flatnonzero(np.isfinite(lo).all(axis=1) & np.isfinite(hi).all(axis=1))
    if not keep.size:
        return []
    h, w = shape
    x0, y0 = (np.floor(lo[keep]).astype(int) - margin).T
    x1, y1 = (np.ceil(hi[keep]).astype(int) + margin + 1).T
    box = np.stack([np.maximum(y0, 0), np.minimum(y1, h), np.maximum(x0, 0), np.minimum(x1, w)], 1)
    box, comp = _merge_overlapping(box)
    out = []
    for k, (by0, by1, bx0, bx1) in enumerate(box):
        out.append(
            ((int(by0 - by0 % align), int(by1), int(bx0 - bx0 % align), int(bx1)), keep[comp == k])
        )
    return out


def _merge_overlapping(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(m, 4)`` of ``(y0, y1, x0, x1)`` merged until none overlap, and which merged box
    each input box went into."""
    comp = np.arange(len(box))
    while len(box) > 1:
        a, b = box[:, None], box[None]
        touch = (
            (a[..., 0] < b[..., 1])
            & (b[..., 0] < a[..., 1])
            & (a[..., 2] < b[..., 3])
            & (b[..., 2] < a[..., 3])
        )
        label = _components(touch)
        n = int(label.max()) + 1
        if n == len(box):
            break
        merged = np.empty((n, 4), dtype=int)
        merged[:, [0, 2]] = np.iinfo(int).max
        merged[:, [1, 3]] = np.iinfo(int).min
        for col, reduce in ((0, np.minimum), (1, np.maximum), (2, np.minimum), (3, np.maximum)):
            reduce.at(merged[:, col], label, box[:, col])
        box, comp = merged, label[comp]
    return box, comp


def _components(touch: np.ndarray) -> np.ndarray:
    """Connected components of a small symmetric boolean adjacency matrix, labelled 0..k-1."""
    reach = touch | np.eye(len(touch), dtype=bool)
    while True:  # transitive closure by squaring: log2(n) products of a few-by-few matrix
        wider = (reach.astype(np.int32) @ reach.astype(np.int32)) > 0
        if np.array_equal(wider, reach):
            break
        reach = wider
    first = reach.argmax(axis=1)  # the lowest index each box reaches names its component
    return np.unique(first, return_inverse=True)[1]


@contextmanager
def quiet_nan():
    """Silence numpy's 'All-NaN slice' warnings (an all-NaN group is expected and handled)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _lk_raw(prev: np.ndarray, nxt: np.ndarray, pts: np.ndarray, params: LKParams):
    new, status, _ = cv2.calcOpticalFlowPyrLK(
        prev,
        nxt,
        np.ascontiguousarray(pts, dtype=np.float32).reshape(-1, 1, 2),
        None,
        winSize=(params.win_size, params.win_size),
        maxLevel=params.max_level,
        criteria=params.criteria,
    )
    return new.reshape(-1, 2), status.reshape(-1).astype(bool)


def lk_groups(
    prev,
    nxt,
    groups: list[np.ndarray],
    params: LKParams = LKParams(),
    motion: float = 32.0,
    exact: bool = False,
):
    """Track point groups from ``prev`` to ``nxt`` (grayscale uint8 frames), one call per crop.

    Parameters
    ----------
    prev, nxt : np.ndarray
        Consecutive frames (any order: pass them swapped to track backwards).
    groups : list of (n_i, 2) arrays of (x, y)
        Points to track; NaN rows are skipped and come back NaN.
    motion : float
        Largest displacement per frame the crop margin allows for.
    exact : bool
        Re-run on the full frames every point LK flags as lost or that ended near its crop
        border, so the result equals full-frame LK even for the points that wander off.

    Returns
    -------
    new : list of (n_i, 2) float64 arrays
        LK's output positions, as OpenCV returns them (no masking of lost points).
    ok : list of (n_i,) bool arrays
        LK's status and the point finite.
    """
    prev = to_gray_u8(prev)
    nxt = to_gray_u8(nxt)
    margin = crop_margin(params, motion)
    new = [np.full(g.shape, np.nan) for g in groups]
    ok = [np.zeros(len(g), dtype=bool) for g in groups]
    h, w = prev.shape[:2]
    if max(h, w) <= 2 * margin:  # any crop would be about the whole frame: one call, no boxes
        boxes = [((0, h, 0, w), np.arange(len(groups)))]
    else:
        boxes = point_boxes(groups, (h, w), margin, 2**params.max_level)
    for box, members in boxes:
        pts = np.concatenate([groups[i] for i in members])
        res, good = _track_box(prev, nxt, pts, box, params, margin, motion, exact)
        start = 0
        for i in members:
            n = len(groups[i])
            new[i] = res[start : start + n]
            ok[i] = good[start : start + n]
            start += n
    return new, ok


def _track_box(prev, nxt, pts, box, params: LKParams, margin: int, motion: float, exact: bool):
    """LK on the crop ``box`` = ``(y0, y1, x0, x1)`` for the points ``pts`` (n, 2) it holds
    (NaN rows skipped); with ``exact``, points lost or near the crop border are re-run on the
    full frames. Returns positions (n, 2) and ok (n,), as :func:`lk_groups`."""
    y0, y1, x0, x1 = box
    h, w = prev.shape[:2]
    finite = np.isfinite(pts).all(axis=1)
    offset = np.array([x0, y0], dtype=np.float32)
    res = np.full(pts.shape, np.nan)
    good = np.zeros(len(pts), dtype=bool)
    p32 = pts[finite].astype(np.float32)
    crop_new, status = _lk_raw(
        np.ascontiguousarray(prev[y0:y1, x0:x1]),
        np.ascontiguousarray(nxt[y0:y1, x0:x1]),
        p32 - offset,
        params,
    )
    crop_new = crop_new + offset
    if exact:
        inner = margin - motion / 2
        near = (
            ((crop_new[:, 0] < x0 + inner) & (x0 > 0))
            | ((crop_new[:, 0] > x1 - inner) & (x1 < w))
            | ((crop_new[:, 1] < y0 + inner) & (y0 > 0))
            | ((crop_new[:, 1] > y1 - inner) & (y1 < h))
        )
        redo = ~status | near | ~np.isfinite(crop_new).all(axis=1)
        if redo.any():
            crop_new[redo], status[redo] = _lk_raw(prev, nxt, p32[redo], params)
    res[finite] = crop_new
    good[finite] = status & np.isfinite(crop_new).all(axis=1)
    return res, good
