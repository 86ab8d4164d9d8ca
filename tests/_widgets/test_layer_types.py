"""The plugin's Points and Tracks layers (``_widgets/_layer_types.py``): napari's own, with the
data extent kept and thumbnails redrawn at a bounded rate. A real napari viewer under Xvfb."""

from __future__ import annotations

import time

import numpy as np
from napari.layers import Points as NapariPoints
from qtpy.QtWidgets import QApplication

from napari_dustrack._widgets import _layer_types


def test_napari_sees_its_own_layer_types(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = viewer.add_layer(_layer_types.Points(np.zeros((3, 3)), ndim=3))
    assert isinstance(layer, NapariPoints)
    assert layer.as_layer_data_tuple()[2] == "points"  # what napari's writers are chosen by
    tracks = _layer_types.Tracks(np.array([[1, 0, 1.0, 1.0], [1, 1, 2.0, 2.0]]))
    assert tracks.as_layer_data_tuple()[2] == "tracks"


def test_extent_follows_replaced_data_not_every_read():
    layer = _layer_types.Points(np.array([[0, 1.0, 2.0], [5, 3.0, 4.0]]), ndim=3)
    np.testing.assert_array_equal(layer._extent_data, [[0, 1, 2], [5, 3, 4]])
    layer.data = np.array([[0, 1.0, 2.0], [9, 30.0, 40.0]])
    np.testing.assert_array_equal(layer._extent_data, [[0, 1, 2], [9, 30, 40]])
    layer.add([[12, 50.0, 60.0]])  # napari replaces the array: a new extent
    np.testing.assert_array_equal(layer._extent_data[1], [12, 50, 60])
    extent = layer._extent_data
    extent[:] = -1  # callers get a copy
    assert layer._extent_data[1, 0] == 12


def test_extent_follows_positions_written_in_place_then_refreshed(make_napari_viewer):
    viewer = make_napari_viewer()
    # as the prediction layers are made: a row per frame and label at (0, 0), filled in place
    layer = viewer.add_layer(_layer_types.Points(np.zeros((20, 3)), ndim=3))
    layer.data[:, 0] = np.arange(20)
    layer.refresh()
    np.testing.assert_array_equal(layer._extent_data, [[0, 0, 0], [19, 0, 0]])
    layer.data[:, 1:] = 7.0
    viewer.dims.set_current_step(0, 5)  # slicing reuses the kept extent
    np.testing.assert_array_equal(layer._extent_data[1], [19, 0, 0])
    layer.refresh()  # the writer's refresh asks for the extent again
    np.testing.assert_array_equal(layer._extent_data, [[0, 7, 7], [19, 7, 7]])


def test_thumbnail_redrawn_at_a_bounded_rate_and_the_last_one_kept(make_napari_viewer):
    viewer = make_napari_viewer()
    frames = np.repeat(np.arange(200), 2)
    data = np.c_[frames, np.tile([4.0, 12.0], 200), np.tile([4.0, 12.0], 200)]
    layer = viewer.add_layer(_layer_types.Points(data, ndim=3, size=3))
    viewer.add_image(np.zeros((200, 16, 16), dtype=np.uint8))
    calls = []
    real = NapariPoints._update_thumbnail
    layer._dustrack_thumbnail_at = time.monotonic()

    def counting(self):
        calls.append(time.monotonic())
        real(self)

    NapariPoints._update_thumbnail = counting
    try:
        for f in range(0, 200, 10):  # a quick scrub: 20 refreshes within ~0.2 s
            viewer.dims.set_current_step(0, f)
        assert len(calls) <= 1
        deadline = time.monotonic() + 2 * _layer_types.THUMBNAIL_S + 1
        while time.monotonic() < deadline and not calls:
            QApplication.processEvents()
            time.sleep(0.01)
    finally:
        NapariPoints._update_thumbnail = real
    assert len(calls) >= 1  # the booked redraw came, showing the last frame's points
    assert not layer._dustrack_thumbnail_booked
