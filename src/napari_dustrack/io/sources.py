"""Where a point came from (the ``source`` column of a point table), written once.

A string enum (as napari's ``layers/points/_points_constants.py``): a member compares equal to
its value, so CSV files keep the plain names.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SOURCES", "TRAINING_SOURCES", "PointSource"]


class PointSource(StrEnum):
    """The ``source`` of a point."""

    MANUAL = "manual"  # placed or corrected by the user
    FLOW = "flow"  # optical-flow fill or propagation
    MODEL = "model"  # heatmap model prediction
    SMOOTHED = "smoothed"  # smoother or final tracks


SOURCES: tuple[str, ...] = tuple(s.value for s in PointSource)
TRAINING_SOURCES: tuple[str, ...] = (PointSource.MANUAL.value,)  # plus any row marked reviewed
