"""The point table: one row per (frame, label), shared by every stage.

Columns ``frame, label, x, y`` and optionally ``source`` (manual, flow, model, smoothed),
``confidence`` (0..1) and ``reviewed`` (bool). ``x`` is the column, ``y`` the row, in pixels,
integer coordinates at pixel centres. A missing row means "not labelled": tables never hold NaN
coordinates; arrays (for the algorithms) hold NaN where a table has no row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import DustrackError
from .atomic import write_atomic
from .sources import SOURCES, TRAINING_SOURCES, PointSource

REQUIRED = ("frame", "label", "x", "y")
COLUMNS = ("frame", "label", "x", "y", "source", "confidence", "reviewed")


def labels_of(table: pd.DataFrame) -> list[str]:
    """Labels in order of first appearance."""
    return list(dict.fromkeys(table["label"].tolist()))


def validate(table: pd.DataFrame, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Check a point table and return it normalised (types, defaults, row order).

    Raises
    ------
    DustrackError
        Missing columns, non-numeric or NaN coordinates, negative or fractional frames,
        duplicate (frame, label) rows, unknown sources or confidences outside 0..1.
    """
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise DustrackError(f"not a point table: missing column(s) {', '.join(missing)}", path)
    out = table.copy()
    for col in ("frame", "x", "y"):
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() & out[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DustrackError(f"non-numeric {col} {out[col].iloc[row]!r} in row {row + 1}", path)
        out[col] = values
    bad_rows = ~np.isfinite(out[["frame", "x", "y"]].to_numpy(dtype=float)).all(axis=1)
    if bad_rows.any():
        row = int(np.flatnonzero(bad_rows)[0])
        raise DustrackError(
            f"{int(bad_rows.sum())} row(s) with NaN frame or coordinates, or infinite ones "
            f"(first: row {row + 1}); leave unlabelled points out instead",
            path,
        )
    frames = out["frame"].to_numpy(dtype=float)
    if len(frames) and ((frames < 0).any() or (frames != np.round(frames)).any()):
        raise DustrackError("frame numbers must be whole numbers >= 0", path)
    out["frame"] = frames.astype(np.int64)
    out["x"] = out["x"].astype(np.float64)
    out["y"] = out["y"].astype(np.float64)
    empty = out["label"].isna().to_numpy() | (out["label"].astype(str).str.strip() == "").to_numpy()
    if empty.any():
        raise DustrackError(f"empty label in row {int(np.flatnonzero(empty)[0]) + 1}", path)
    out["label"] = out["label"].astype(str)
    dup = out.duplicated(["frame", "label"])
    if dup.any():
        first = out[dup].iloc[0]
        raise DustrackError(
            f"{int(dup.sum())} duplicate (frame, label) row(s), first: frame {first['frame']} "
            f"label {first['label']!r}",
            path,
        )
    out = _normalise_optional(out, path)
    out = out.sort_values("frame", kind="stable").reset_index(drop=True)
    return out[list(COLUMNS) + [c for c in out.columns if c not in COLUMNS]]


def _normalise_optional(out: pd.DataFrame, path) -> pd.DataFrame:
    if "source" not in out.columns:
        out["source"] = PointSource.MANUAL
    out["source"] = out["source"].fillna("manual").astype(str)
    unknown = sorted(set(out["source"]) - set(SOURCES))
    if unknown:
        raise DustrackError(f"unknown source(s) {unknown}; expected one of {list(SOURCES)}", path)
    if "confidence" not in out.columns:
        out["confidence"] = 1.0
    conf = pd.to_numeric(out["confidence"], errors="coerce").fillna(1.0).astype(np.float64)
    if ((conf < 0) | (conf > 1)).any():
        raise DustrackError("confidence must lie in 0..1", path)
    out["confidence"] = conf
    if "reviewed" not in out.columns:
        out["reviewed"] = False
    if out["reviewed"].dtype != bool:
        out["reviewed"] = out["reviewed"].map(_as_bool).astype(bool)
    return out


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "t")
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    return bool(value)


def make_table(
    frame, label, x, y, source=PointSource.MANUAL, confidence=None, reviewed=False
) -> pd.DataFrame:
    """Build a validated table from columns (scalars broadcast)."""
    frame = np.asarray(frame)
    n = len(frame)
    data = {
        "frame": frame,
        "label": np.broadcast_to(np.asarray(label, dtype=object), (n,)),
        "x": np.asarray(x, dtype=float),
        "y": np.asarray(y, dtype=float),
        "source": np.broadcast_to(np.asarray(source, dtype=object), (n,)),
        "confidence": np.broadcast_to(
            np.asarray(1.0 if confidence is None else confidence, dtype=float), (n,)
        ),
        "reviewed": np.broadcast_to(np.asarray(reviewed, dtype=bool), (n,)),
    }
    return validate(pd.DataFrame(data))


def to_array(
    table: pd.DataFrame,
    labels: Sequence[str] | None = None,
    n_frames: int | None = None,
    column: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Positions as an array ``(n_frames, n_labels, 2)`` of (x, y), NaN where there is no row.

    With ``column`` (e.g. ``"confidence"``) returns ``(n_frames, n_labels)`` of that column,
    NaN where there is no row.
    """
    labels = list(labels) if labels is not None else labels_of(table)
    if n_frames is None:
        n_frames = int(table["frame"].max()) + 1 if len(table) else 0
    index = {lab: i for i, lab in enumerate(labels)}
    keep = table["label"].isin(index) & (table["frame"] < n_frames)
    sub = table[keep]
    frames = sub["frame"].to_numpy(dtype=np.int64)
    cols = sub["label"].map(index).to_numpy(dtype=np.int64)
    if column is None:
        out = np.full((n_frames, len(labels), 2), np.nan)
        out[frames, cols, 0] = sub["x"].to_numpy()
        out[frames, cols, 1] = sub["y"].to_numpy()
    else:
        out = np.full((n_frames, len(labels)), np.nan)
        out[frames, cols] = sub[column].to_numpy(dtype=float)
    return out, labels


def from_array(
    xy: np.ndarray,
    labels: Sequence[str],
    source: str = PointSource.MODEL,
    confidence: np.ndarray | None = None,
    reviewed: bool | np.ndarray = False,
    frames: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Inverse of :func:`to_array`: rows for every finite position, NaN positions left out."""
    xy = np.asarray(xy, dtype=float)
    n_frames, n_labels = xy.shape[:2]
    frames = np.arange(n_frames) if frames is None else np.asarray(frames)
    f_idx, l_idx = np.nonzero(np.isfinite(xy).all(axis=2))
    conf = np.ones((n_frames, n_labels)) if confidence is None else np.asarray(confidence, float)
    rev = np.broadcast_to(np.asarray(reviewed, dtype=bool), (n_frames, n_labels))
    return make_table(
        frames[f_idx],
        np.asarray(list(labels), dtype=object)[l_idx],
        xy[f_idx, l_idx, 0],
        xy[f_idx, l_idx, 1],
        source=source,
        confidence=np.clip(np.nan_to_num(conf[f_idx, l_idx], nan=0.0), 0, 1),
        reviewed=rev[f_idx, l_idx],
    )


def check_frames(table: pd.DataFrame, n_frames: int, path=None) -> None:
    """Refuse a table with points on frames a video of ``n_frames`` frames does not have."""
    last = int(table["frame"].max()) if len(table) else -1
    if last >= n_frames:
        raise DustrackError(
            f"has points on frame {last} but the video has {n_frames} frames "
            f"(0..{n_frames - 1}); are they for this video?",
            path,
        )


def training_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows that count as training data: manual, or reviewed."""
    return table[table["source"].isin(TRAINING_SOURCES) | table["reviewed"]]


# Cells read as missing in numeric columns (pandas' defaults); text columns are kept verbatim.
_NA = [
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
]
TEXT_COLUMNS = ("label", "source")


def read_csv(path: str | os.PathLike, text: Sequence[str] = TEXT_COLUMNS) -> pd.DataFrame:
    """``pd.read_csv`` with a missing or unparsable file as a one-line :class:`DustrackError`.

    The ``text`` columns are read as the strings written (a label ``01``, ``NA`` or ``1e3``
    stays what it is); the other columns get pandas' usual missing-value rules.
    """
    try:
        return _read_verbatim(lambda: path, text)
    except FileNotFoundError:
        raise DustrackError("file not found", path) from None
    except IsADirectoryError:
        raise DustrackError("is a folder, not a CSV file", path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DustrackError(
            f"malformed CSV ({str(exc).splitlines()[0] if str(exc) else 'empty'})", path
        ) from None


def _read_verbatim(source, text: Sequence[str]) -> pd.DataFrame:
    head = pd.read_csv(source(), nrows=0)
    others = {c: _NA for c in head.columns if c not in text}
    return pd.read_csv(
        source(),
        dtype={c: str for c in text if c in head.columns},
        keep_default_na=False,
        na_values=others,
    )


def read_csv_text(content: str, text: Sequence[str] = TEXT_COLUMNS) -> pd.DataFrame:
    """:func:`read_csv` of CSV ``content`` held in memory."""
    import io

    return _read_verbatim(lambda: io.StringIO(content), text)


def read_points_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a native point-table CSV."""
    return validate(read_csv(path), path)


def write_points_csv(table: pd.DataFrame, path: str | os.PathLike, backup: bool = True) -> None:
    """Atomically write a point table as CSV (the old file, if any, kept as ``.bak``)."""
    table = validate(table)
    write_atomic(path, lambda p: table.to_csv(p, index=False), backup=backup)


def tracks_array(table: pd.DataFrame, n_frames: int, path=None):
    """``(xy (N, L, 2), confidence (N, L) or None, labels)`` of a point table for a video."""
    if table.empty:
        raise DustrackError("no points in the file", path)
    last = int(table["frame"].max())
    if last >= n_frames:
        raise DustrackError(
            f"the tracks reach frame {last} but the video has {n_frames} frames "
            f"(0..{n_frames - 1}); are they for this video?",
            path,
        )
    labels = labels_of(table)
    xy, _ = to_array(table, labels, n_frames)
    conf = None
    if "confidence" in table:
        conf, _ = to_array(table, labels, n_frames, column="confidence")
        if not np.isfinite(conf).any() or np.nanmin(conf) >= 1.0:
            conf = None  # all 1 (or absent): nothing to weight
    return xy, conf, labels
