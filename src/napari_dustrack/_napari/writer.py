"""npe2 writers: Points and Tracks layers saved as a point table, in the format the file name
says (native ``.csv``, DeepLabCut ``.h5`` or a ``CollectedData*.csv``, DUSTrack ``.json``);
atomic, the old file kept as ``.bak``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..io.layers import full_tracks, points_to_table, tracks_to_table
from ..io.points_io import write_points as write_table
from ..io.sources import PointSource


def write_points(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Points layer (rows ``frame, y, x``; features with ``label``) as a point table."""
    features = pd.DataFrame(meta.get("features", {}))
    if "label" not in features:
        features["label"] = [f"p{i}" for i in range(len(data))]
    write_table(points_to_table(data, features), path)
    return [path]


def write_tracks(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Tracks layer (rows ``track_id, frame, y, x``) as a point table, a label a track:
    all its rows, also those a long layer keeps beside its window of frames."""
    metadata = meta.get("metadata") or {}
    data, features = full_tracks(data, meta.get("features"), metadata)
    row_labels = features["label"].to_numpy() if "label" in features else None
    source = metadata.get("source", PointSource.SMOOTHED.value)
    write_table(tracks_to_table(data, row_labels=row_labels, source=source), path)
    return [path]
