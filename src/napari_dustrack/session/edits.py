"""The larger edits of a session, worked out on a copy of its point store: the points a flow
result, a table of predictions or an imported table would write. Each returns the changes;
the session commits them as one edit (so these can run in a worker thread). The smaller edits
(copy, accept, rename) and the checks of new names, colours and positions are here too."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.colours import next_colour
from ..io.table import COLUMNS
from .records import FLOW, MANUAL, Key, Label, Point

_COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


def check_colour(colour: str) -> str:
    """``colour`` as lower-case ``#rrggbb``; DustrackError if it is not of that form."""
    if not isinstance(colour, str) or not _COLOUR_RE.match(colour):
        raise DustrackError(f"colour {colour!r} is not of the form #rrggbb")
    return colour.lower()


def check_new_name(name, names: Sequence[str]) -> str:
    """``name`` stripped; DustrackError if it is empty or already one of ``names``."""
    name = str(name).strip() if name is not None else ""
    if not name:
        raise DustrackError("a label needs a name")
    if name in names:
        raise DustrackError(f"there is already a label {name!r}")
    return name


def checked_point(
    label: str,
    x: float,
    y: float,
    source: str = MANUAL,
    confidence: float = 1.0,
    reviewed: bool = False,
) -> Point:
    """A point at ``(x, y)``; DustrackError if the position is not a finite number."""
    if not (math.isfinite(x) and math.isfinite(y)):
        raise DustrackError(f"position ({x}, {y}) of {label!r} is not a number")
    return Point(float(x), float(y), source, float(confidence), bool(reviewed))


def rename_changes(points: Mapping[Key, Point], old: str, new: str) -> dict[Key, Point | None]:
    """The points of label ``old`` moved to label ``new``."""
    changes: dict[Key, Point | None] = {}
    for (frame, lab), point in points.items():
        if lab == old:
            changes[(frame, old)] = None
            changes[(frame, new)] = point
    return changes


def copy_changes(
    points: Mapping[Key, Point], frame: int, labels: Sequence[str], wanted: Iterable[str]
) -> dict[Key, Point | None]:
    """The points of ``frame - 1`` copied onto ``frame`` as manual points, in ``labels`` order
    (those of ``wanted`` only; labels already placed by hand on ``frame`` are kept)."""
    wanted = set(wanted)
    changes: dict[Key, Point | None] = {}
    for lab in labels:
        prev = points.get((frame - 1, lab))
        if prev is None or lab not in wanted:
            continue
        current = points.get((frame, lab))
        if not (current is not None and current.manual):
            changes[(frame, lab)] = Point(prev.x, prev.y, MANUAL)
    return changes


def accept_changes(
    points: Mapping[Key, Point], lo: int, hi: int, wanted: Iterable[str]
) -> dict[Key, Point | None]:
    """The non-manual points of ``wanted`` on frames ``lo..hi`` marked as reviewed."""
    wanted = set(wanted)
    return {
        key: replace(p, reviewed=True)
        for key, p in points.items()
        if lo <= key[0] <= hi and key[1] in wanted and not p.protected
    }


def unprotected(points: Mapping[Key, Point], changes: Mapping[Key, Point]) -> dict[Key, Point]:
    """The ``changes`` whose point in ``points`` is absent or neither manual nor reviewed."""
    return {
        key: p for key, p in changes.items() if points.get(key) is None or not points[key].protected
    }


def flow_changes(
    points: Mapping[Key, Point],
    xy: np.ndarray,
    labels: Sequence[str],
    frames: Sequence[int] | None,
    confidence: np.ndarray | None,
    *,
    known: set[str],
    in_video: Callable[[int], bool],
    keep_reviewed: bool,
) -> dict[Key, Point | None]:
    """The ``flow`` points of :meth:`AnnotationSession.apply_flow` (see there)."""
    xy = np.asarray(xy, dtype=float)
    frames = np.arange(len(xy)) if frames is None else np.asarray(frames, dtype=np.int64)
    if xy.ndim != 3 or xy.shape[1] != len(labels) or len(frames) != len(xy):
        raise DustrackError(
            f"flow result of shape {xy.shape} does not match "
            f"{len(frames)} frames x {len(labels)} labels"
        )
    conf = np.ones(xy.shape[:2]) if confidence is None else np.asarray(confidence, dtype=float)
    conf = np.clip(np.nan_to_num(conf, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    changes: dict[Key, Point | None] = {}
    rows, cols = np.nonzero(np.isfinite(xy).all(axis=2))
    for i, j, x, y, c in zip(
        frames[rows].tolist(),
        cols.tolist(),
        xy[rows, cols, 0].tolist(),
        xy[rows, cols, 1].tolist(),
        conf[rows, cols].tolist(),
        strict=True,
    ):
        key = (i, labels[j])
        if labels[j] not in known or not in_video(i):
            continue
        old = points.get(key)
        if old is not None and (old.manual or (keep_reviewed and old.reviewed)):
            continue
        changes[key] = Point(x, y, FLOW, c, False)
    return changes


def prediction_changes(
    points: Mapping[Key, Point],
    table: pd.DataFrame,
    labels: Sequence[str],
    *,
    start: int | None,
    end: int | None,
    min_confidence: float,
) -> tuple[dict[Key, Point], int, int]:
    """The reviewed points of :meth:`AnnotationSession.accept_predictions` and its frame range
    (``table`` validated already)."""
    unknown = sorted(set(table["label"]) - set(labels))
    if unknown:
        raise DustrackError(
            f"the predictions have label(s) {unknown} that the annotations do "
            f"not ({list(labels)}); add or rename labels first"
        )
    lo = int(table["frame"].min()) if start is None and len(table) else int(start or 0)
    if end is None and len(table):
        hi = int(table["frame"].max())
    else:
        hi = int(end if end is not None else lo)
    lo, hi = sorted((lo, hi))
    rows = table[table["frame"].between(lo, hi) & (table["confidence"] >= float(min_confidence))]
    if rows.empty:
        cond = f" with confidence >= {min_confidence:g}" if min_confidence > 0 else ""
        raise DustrackError(f"no predicted points on frames {lo}-{hi}{cond}")
    changes: dict[Key, Point] = {}
    columns = ["frame", "label", "x", "y", "source", "confidence"]
    for f, lab, x, y, src, c in rows[columns].itertuples(index=False):
        key = (int(f), str(lab))
        old = points.get(key)
        if old is None or not old.protected:
            changes[key] = Point(float(x), float(y), str(src), float(c), True)
    return changes, lo, hi


def import_changes(
    table: pd.DataFrame, labels: Sequence[Label]
) -> tuple[list[Label], dict[Key, Point | None]]:
    """The label list with the table's new labels appended (free colours), and its points
    (``table`` validated already)."""
    labels = list(labels)
    names = {lab.name for lab in labels}
    used = {lab.colour for lab in labels}
    for name in dict.fromkeys(table["label"]):
        if name not in names:
            labels.append(Label(name, next_colour(used)))
            used.add(labels[-1].colour)
            names.add(name)
    changes: dict[Key, Point | None] = {
        (int(f), lab): Point(float(x), float(y), src, float(c), bool(r))
        for f, lab, x, y, src, c, r in table[list(COLUMNS)].itertuples(index=False)
    }
    return labels, changes
