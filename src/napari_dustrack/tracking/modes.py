"""The names of the tracking methods, written once: smoothing modes and fill methods.

String enums (as napari's ``layers/points/_points_constants.py``): a member compares equal to
its value, so tables, manifests and command lines keep the plain names. The tuples are what a
menu or a ``choices=`` lists, default first.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FILL_METHODS", "SMOOTH_MODES", "FillMethod", "SmoothMode"]


class SmoothMode(StrEnum):
    """Modes of :func:`napari_dustrack.tracking.smoothing.smooth` (see its module docstring)."""

    FUSION = "fusion"  # the default
    DUSTRACK = "dustrack"
    FAST = "fast"


class FillMethod(StrEnum):
    """Methods of :func:`napari_dustrack.tracking.flow.fill_between`."""

    ROBUST = "robust"  # the default
    DUSTRACK = "dustrack"


SMOOTH_MODES: tuple[str, ...] = tuple(m.value for m in SmoothMode)
FILL_METHODS: tuple[str, ...] = tuple(m.value for m in FillMethod)
