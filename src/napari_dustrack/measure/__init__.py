"""Measurements over time from point tables (no Qt): definitions, units, geometry, results.

>>> from napari_dustrack.measure import Measure, Calibration, compute
>>> m = Measure("wall", "distance", ["endo", "epi"])
>>> result = compute(table, [m], Calibration(spacing=(0.1, 0.1), fps=50))  # doctest: +SKIP
"""

from .compute import compute, measure_values, time_axis
from .definitions import (
    CHANGES,
    KINDS,
    STRAINS,
    Measure,
    load_measures,
    measures_from_json,
    measures_to_json,
    save_measures,
    sidecar_measures_path,
)
from .units import Calibration

__all__ = [
    "CHANGES",
    "KINDS",
    "STRAINS",
    "Calibration",
    "Measure",
    "compute",
    "load_measures",
    "measure_values",
    "measures_from_json",
    "measures_to_json",
    "save_measures",
    "sidecar_measures_path",
    "time_axis",
]
