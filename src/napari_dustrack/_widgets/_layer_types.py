"""napari's Points and Tracks layers with two per-frame-change costs bounded, for the layers the
plugin makes (annotations, model and smoothed points and their tracks).

On every frame change napari refreshes each layer's thumbnail, and a Points thumbnail, like the
layer list's extent, recomputes the layer's data extent: a min/max over every point (~4 ms for
80,000 points, several times per frame change). On a long cine those refreshes, and the layer
list repainting the new thumbnails, were over a third of a scrub's GUI-thread time. So:

- the data extent is kept until the layer is refreshed with ``extent=True`` (which napari's data
  setter does, and the plugin does after writing positions in place) or its array is replaced;
  napari's slicing on a frame change, which also asks for the extent, reuses it;
- a thumbnail is redrawn at most every :data:`THUMBNAIL_S` seconds; one asked for in between
  is drawn when that time is up (a thumbnail shows where the points are, not every frame).

The classes keep napari's names, so napari's writers, controls and ``isinstance`` checks treat
them as its own.
"""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
from napari import layers
from qtpy.QtCore import QTimer

THUMBNAIL_S = 0.5


def _thumbnail_due(layer) -> bool:
    """Whether ``layer`` may redraw its thumbnail now; if not, a redraw is booked for when it may
    (booked from the GUI thread only: a layer built in a worker thread draws at once)."""
    now = time.monotonic()
    wait = layer._dustrack_thumbnail_at + THUMBNAIL_S - now
    if wait <= 0 or threading.current_thread() is not threading.main_thread():
        layer._dustrack_thumbnail_at = now
        return True
    if not layer._dustrack_thumbnail_booked:
        layer._dustrack_thumbnail_booked = True
        ref = weakref.ref(layer)
        QTimer.singleShot(int(wait * 1000) + 1, lambda: _booked_thumbnail(ref))
    return False


def _booked_thumbnail(ref) -> None:
    layer = ref()
    if layer is not None:
        layer._dustrack_thumbnail_booked = False
        layer._update_thumbnail()


class Points(layers.Points):
    """napari's Points with its data extent kept and its thumbnail redrawn at a bounded rate."""

    _dustrack_thumbnail_at = 0.0
    _dustrack_thumbnail_booked = False
    _dustrack_extent = None

    @property
    def _extent_data(self) -> np.ndarray:
        data = self.data
        key = (id(data), data.shape)
        if self._dustrack_extent is None or self._dustrack_extent[0] != key:
            self._dustrack_extent = (key, super()._extent_data)
        return self._dustrack_extent[1].copy()

    def refresh(self, event=None, *, extent: bool = True, **kwargs) -> None:
        if extent:
            self._dustrack_extent = None
        super().refresh(event, extent=extent, **kwargs)

    def _update_thumbnail(self) -> None:
        if _thumbnail_due(self):
            super()._update_thumbnail()


class Tracks(layers.Tracks):
    """napari's Tracks with its thumbnail redrawn at a bounded rate."""

    _dustrack_thumbnail_at = 0.0
    _dustrack_thumbnail_booked = False

    def _update_thumbnail(self) -> None:
        if _thumbnail_due(self):
            super()._update_thumbnail()
