"""The Measure tab's data: layer tables copied for a worker thread, measures over them, units,
and the plotted series (thinned, in physical units and seconds) ready to hand to matplotlib.

Plain functions of layers and tables (any thread); the widget (:mod:`.measure`) schedules them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from napari.layers import Points, Tracks

from ..errors import DustrackError
from ..io.layers import full_tracks, points_to_table, tracks_to_table
from ..io.sources import PointSource
from ..io.table import labels_of, to_array
from ..measure import compute
from ..measure.plotting import envelope, isolated

PLOT_POINTS = 1200  # per line: the envelope of a long series, ~3 points per screen pixel


class Series(NamedTuple):
    """One plotted line: ``(t, y)`` thinned to its envelope, and the isolated values a line
    cannot show (drawn as markers)."""

    t: np.ndarray
    y: np.ndarray
    t_alone: np.ndarray
    y_alone: np.ndarray


def series_of(t, y) -> Series:
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    alone = isolated(y)
    return Series(*envelope(t, y, max_points=PLOT_POINTS), t[alone], y[alone])


def layer_series(table, result, calibration, n_frames) -> dict:
    """Every line of one layer: ``{("x"|"y", label): Series}`` of its positions in physical
    units and ``{("measure", column): Series}`` of its measure columns, against time."""
    xy, labels = to_array(table, labels_of(table), n_frames)
    phys = calibration.to_physical(xy)
    t = np.arange(n_frames) * calibration.frame_interval
    out = {}
    for j, label in enumerate(labels):
        out[("x", label)] = series_of(t, phys[:, j, 0])
        out[("y", label)] = series_of(t, phys[:, j, 1])
    if result is not None:
        t_result = result["frame"].to_numpy(dtype=float) * calibration.frame_interval
        for column in result.columns:
            if column != "frame" and not column.startswith("time"):
                out[("measure", column)] = series_of(t_result, result[column].to_numpy(float))
    return out


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
    ``series`` (the checked layers' plotted lines, :func:`layer_series`), ``problems``,
    ``n_frames``. Only the plotting itself is left to the GUI thread."""
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
    series = {
        name: layer_series(tables[name], results.get(name), calibration, n_frames)
        for name in checked
        if name in tables
    }
    return {
        "tables": tables,
        "results": results,
        "series": series,
        "problems": problems,
        "n_frames": n_frames,
    }


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
