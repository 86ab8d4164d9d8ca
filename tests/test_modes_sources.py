"""Modes, methods and point sources: string enums whose values are the names files and CLIs use."""

from __future__ import annotations

import pandas as pd

from napari_dustrack.io import table
from napari_dustrack.io.sources import SOURCES, TRAINING_SOURCES, PointSource
from napari_dustrack.tracking import flow, smoothing
from napari_dustrack.tracking.modes import FILL_METHODS, SMOOTH_MODES, FillMethod, SmoothMode


def test_values_are_the_plain_names_default_first():
    assert SMOOTH_MODES == ("fusion", "dustrack", "fast") == smoothing.MODES
    assert FILL_METHODS == ("robust", "dustrack") == flow.FILL_METHODS
    assert SOURCES == ("manual", "flow", "model", "smoothed")
    assert all(type(m) is str for m in SMOOTH_MODES + FILL_METHODS + SOURCES)  # argparse, Qt
    assert SmoothMode("fast") == "fast" and f"{FillMethod.ROBUST}" == "robust"


def test_point_table_sources_agree_and_enum_members_select_rows():
    assert tuple(table.SOURCES) == SOURCES and tuple(table.TRAINING_SOURCES) == TRAINING_SOURCES
    rows = pd.DataFrame({"source": ["manual", "flow", "model", "flow"]})
    assert (rows["source"] == PointSource.FLOW).sum() == 2
