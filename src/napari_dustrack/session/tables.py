"""Conversions between the session's point store ``{(frame, label): Point}`` and the project's
point tables and arrays: the table the autosave writes and restores, and the frames where a
flow result lost a label."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io.table import COLUMNS, validate
from .records import Key, Point


def lost_frames(
    xy: np.ndarray,
    labels: Sequence[str],
    frames: Sequence[int] | None = None,
    spans: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, list[int]]:
    """Frames where optical flow lost each label: NaN rows of ``xy`` (n, L, 2).

    ``spans`` limits a label to the frames flow was asked to fill (its keyframe span);
    without it every row counts. Labels that lost nothing are left out.
    """
    xy = np.asarray(xy, dtype=float)
    frames = np.arange(len(xy)) if frames is None else np.asarray(frames, dtype=np.int64)
    lost = ~np.isfinite(xy).all(axis=2)
    out: dict[str, list[int]] = {}
    for j, label in enumerate(labels):
        mask = lost[:, j].copy()
        if spans is not None:
            lo, hi = spans.get(label, (1, 0))
            mask &= (frames >= lo) & (frames <= hi)
        if mask.any():
            out[label] = frames[mask].tolist()
    return out


def points_table(points: Mapping[Key, Point], labels: Sequence[str] = ()) -> pd.DataFrame:
    """A validated point table from ``{(frame, label): Point}`` (sorted by frame, label order)."""
    order = {lab: i for i, lab in enumerate(labels)}
    keys = sorted(points, key=lambda k: (k[0], order.get(k[1], len(order)), k[1]))
    rows = [(f, lab, points[(f, lab)]) for f, lab in keys]
    table = pd.DataFrame(
        {
            "frame": np.array([f for f, _, _ in rows], dtype=np.int64),
            "label": pd.Series([lab for _, lab, _ in rows], dtype=object),
            "x": np.array([p.x for _, _, p in rows], dtype=float),
            "y": np.array([p.y for _, _, p in rows], dtype=float),
            "source": pd.Series([p.source for _, _, p in rows], dtype=object),
            "confidence": np.array([p.confidence for _, _, p in rows], dtype=float),
            "reviewed": np.array([p.reviewed for _, _, p in rows], dtype=bool),
        }
    )
    return validate(table)


def table_points(table: pd.DataFrame) -> dict[Key, Point]:
    """Inverse of :func:`points_table`."""
    return {
        (int(f), str(lab)): Point(float(x), float(y), str(src), float(c), bool(r))
        for f, lab, x, y, src, c, r in table[list(COLUMNS)].itertuples(index=False)
    }


def next_missing(
    points: Mapping[Key, Point], labels: Sequence[str], n_frames: int, frame: int, *, wrap: bool
) -> int | None:
    """The first frame after ``frame`` where one of ``labels`` has no point in ``points``:
    to the end of the video, then (``wrap``) from frame 0; None if there is none."""
    counts = np.zeros(n_frames, dtype=np.int64)
    wanted = set(labels)
    for f, lab in points:
        if lab in wanted and 0 <= f < n_frames:
            counts[f] += 1
    order = np.r_[np.arange(frame + 1, n_frames), np.arange(0, frame + 1) if wrap else []]
    missing = order[counts[order.astype(np.int64)] < len(labels)]
    return int(missing[0]) if len(missing) else None


def manual_array(points: Mapping[Key, Point], labels: Sequence[str], n_frames: int) -> np.ndarray:
    """(n_frames, L, 2) of the manual points (keyframes) of ``labels``, NaN elsewhere."""
    index = {lab: j for j, lab in enumerate(labels)}
    out = np.full((n_frames, len(labels), 2), np.nan)
    for (f, lab), p in points.items():
        if p.manual and lab in index and 0 <= f < n_frames:
            out[f, index[lab]] = (p.x, p.y)
    return out


def keyframes(points: Mapping[Key, Point], label: str | None) -> list[int]:
    """Frames with a manual point (of ``label``, or of any label), sorted."""
    return sorted(
        {f for (f, lab), p in points.items() if p.manual and (label is None or lab == label)}
    )


def positions(points: Mapping[Key, Point], frame: int, labels: Sequence[str]) -> np.ndarray:
    """(L, 2) of (x, y) on ``frame``; NaN where a label has no point."""
    out = np.full((len(labels), 2), np.nan)
    for j, lab in enumerate(labels):
        p = points.get((int(frame), lab))
        if p is not None:
            out[j] = (p.x, p.y)
    return out
