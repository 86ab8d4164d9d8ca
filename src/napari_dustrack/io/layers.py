"""Point table <-> napari layer data, as plain arrays (no napari import).

Points layer: ``data`` rows ``(frame, y, x)`` with features ``label, source, confidence, reviewed``.
Tracks layer: ``data`` rows ``(track_id, frame, y, x)``, one track per label (id = label index
+ 1), features carrying ``label``. napari's Tracks layer rejects NaN, so a gap is rows left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .sources import PointSource
from .table import COLUMNS, labels_of, validate


def table_to_points(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Return ``(data, features)`` for a Points layer."""
    table = validate(table)
    data = table[["frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 3)
    features = table[["label", "source", "confidence", "reviewed"]].reset_index(drop=True)
    return data, features


def points_to_table(data: np.ndarray, features: pd.DataFrame | dict) -> pd.DataFrame:
    """Inverse of :func:`table_to_points`; ``data`` may carry extra leading dims (ignored)."""
    data = np.asarray(data, dtype=float).reshape(
        -1, np.shape(data)[-1] if np.ndim(data) == 2 else 3
    )
    features = pd.DataFrame(features).reset_index(drop=True)
    table = pd.DataFrame(
        {
            "frame": np.round(data[:, -3]).astype(np.int64),
            "label": features["label"].astype(str),
            "x": data[:, -1],
            "y": data[:, -2],
        }
    )
    for col in COLUMNS[4:]:
        if col in features:
            table[col] = features[col].to_numpy()
    return validate(table)


def table_to_tracks(
    table: pd.DataFrame, labels: Sequence[str] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return ``(data, features)`` for a Tracks layer, one track per label.

    Tracks are sorted by id then frame (the order napari keeps); a track with a single point
    is kept (napari accepts it).
    """
    table = validate(table)
    labels = list(labels) if labels is not None else labels_of(table)
    ids = {lab: i + 1 for i, lab in enumerate(labels)}
    sub = table[table["label"].isin(ids)].copy()
    sub["track_id"] = sub["label"].map(ids)
    sub = sub.sort_values(["track_id", "frame"], kind="stable")
    data = sub[["track_id", "frame", "y", "x"]].to_numpy(dtype=float).reshape(-1, 4)
    features = {
        "label": sub["label"].to_numpy(dtype=object),
        "confidence": sub["confidence"].to_numpy(dtype=float),
    }
    return data, features


FULL_TRACKS = "dustrack_full_tracks"  # metadata key: a windowed Tracks layer's whole table


def full_tracks(data, features, metadata) -> tuple[np.ndarray, pd.DataFrame]:
    """``(data, features)`` of all rows of a Tracks layer, given its ``data``, ``features`` and
    ``metadata``: the plugin shows a long table through a window of frames around the current
    one and keeps the whole table in ``metadata[FULL_TRACKS]`` (saving and measuring read it)."""
    full = (metadata or {}).get(FULL_TRACKS)
    if full is not None:
        return full
    return np.asarray(data), pd.DataFrame(features if features is not None else {})


def tracks_to_table(
    data: np.ndarray,
    row_labels: Sequence[str] | None = None,
    track_labels: Sequence[str] | None = None,
    source: str = PointSource.SMOOTHED.value,
) -> pd.DataFrame:
    """Inverse of :func:`table_to_tracks`.

    Labels come from ``row_labels`` (one per row, as napari's ``features['label']``), else from
    ``track_labels`` indexed by ``track_id - 1``, else they are the track ids.
    """
    data = np.asarray(data, dtype=float).reshape(-1, 4)
    ids = data[:, 0].astype(np.int64)
    if row_labels is not None:
        names = np.asarray(row_labels, dtype=object).astype(str)
    elif track_labels is not None:
        names = np.asarray(list(track_labels), dtype=object)[ids - 1].astype(str)
    else:
        names = ids.astype(str)
    table = pd.DataFrame(
        {
            "frame": np.round(data[:, 1]).astype(np.int64),
            "label": names,
            "x": data[:, 3],
            "y": data[:, 2],
            "source": source,
        }
    )
    return validate(table)
