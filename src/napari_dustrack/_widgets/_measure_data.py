"""The Measure tab's data: layer tables copied for a worker thread, measures over them, units.

Plain functions of layers and tables (any thread); the widget (:mod:`.measure`) schedules them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.layers import Points, Tracks

from ..errors import DustrackError
from ..io.layers import full_tracks, points_to_table, tracks_to_table
from ..io.sources import PointSource
from ..measure import compute


def layer_table(layer) -> pd.DataFrame | None:
    """The point table of a Points or Tracks layer with a ``label`` feature, else None."""
    return table_of(copy_of(layer))


def copy_of(layer):
    """What :func:`table_of` needs of a layer, copied (the worker thread reads the copy while
    the user goes on editing the layer)."""
    features = getattr(layer, "features", None)
    if features is None or "label" not in features or len(layer.data) == 0:
        return None
    if isinstance(layer, Points):
        shown = np.asarray(layer.shown, dtype=bool)
        return ("points", np.array(layer.data)[shown], features.iloc[np.flatnonzero(shown)].copy())
    if isinstance(layer, Tracks):
        data, features = full_tracks(layer.data, features, layer.metadata)  # all frames
        return (
            "tracks",
            np.array(data),
            np.array(features["label"]),
            layer.metadata.get("source", PointSource.SMOOTHED.value),
        )
    return None


def table_of(copy) -> pd.DataFrame | None:
    if copy is None:
        return None
    if copy[0] == "points":
        return points_to_table(copy[1], copy[2].reset_index(drop=True))
    return tracks_to_table(copy[1], row_labels=copy[2], source=copy[3])


def compute_all(copies: dict, checked, measures, calibration, n_frames) -> dict:
    """Tables and measure results of layer copies (any thread): ``tables``, ``results``,
    ``problems``, ``n_frames``."""
    tables, results, problems = {}, {}, []
    for name, copy in copies.items():
        try:
            table = table_of(copy)
        except DustrackError as exc:
            problems.append(f"{name}: {exc.problem}")
            continue
        if table is not None:
            tables[name] = table
    if not n_frames:
        n_frames = max((int(t["frame"].max()) + 1 for t in tables.values() if len(t)), default=0)
    for name in checked:
        table = tables.get(name)
        if table is None or not measures:
            continue
        usable = [m for m in measures if set(m.labels) <= set(table["label"].unique())]
        try:
            results[name] = compute(table, usable, calibration, n_frames=n_frames)
        except DustrackError as exc:
            problems.append(f"{name}: {exc.problem}")
    return {"tables": tables, "results": results, "problems": problems, "n_frames": n_frames}


def layer_units(layer) -> tuple[tuple[float, float] | None, float | None]:
    """``(pixel spacing (dy, dx) in mm, frames per second)`` of a ``(t, y, x)`` layer from its
    napari ``scale`` and ``units``; None for what its units do not say (``pixel``)."""
    if layer is None or len(getattr(layer, "scale", ())) < 3 or not getattr(layer, "units", None):
        return None, None
    (dt, dy, dx), (ut, uy, ux) = tuple(layer.scale)[-3:], tuple(layer.units)[-3:]

    def size(scale, unit, dimension, target):
        one = 1 * unit  # a pint quantity: napari's units are pint units
        return float(scale) * one.to(target).magnitude if one.check(dimension) else None

    sy, sx = size(dy, uy, "[length]", "mm"), size(dx, ux, "[length]", "mm")
    seconds = size(dt, ut, "[time]", "s")
    spacing = (sy, sx) if sy and sx else None
    return spacing, (1.0 / seconds if seconds else None)


def is_track_layer(layer) -> bool:
    features = getattr(layer, "features", None)
    return isinstance(layer, (Points, Tracks)) and features is not None and "label" in features
