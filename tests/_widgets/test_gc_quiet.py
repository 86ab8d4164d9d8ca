"""While the dock is shown, the collector's long-lived objects are frozen; a layer removal and
hiding the dock thaw them, so cyclic garbage is still freed."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

pytestmark = pytest.mark.gui


class Cycle:
    """An object kept alive only by a reference to itself once dropped."""

    def __init__(self):
        self.me = self


@pytest.fixture
def shown_dock(make_napari_viewer, qtbot):
    from napari_dustrack._widgets.main import DustrackWidget

    gc.unfreeze()
    viewer = make_napari_viewer(show=True)
    keep = [Cycle()]  # made before the dock is shown: it will be frozen
    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    qtbot.waitUntil(dock.isVisible, timeout=5000)
    yield viewer, dock, keep
    gc.unfreeze()


def test_objects_frozen_while_shown_and_cycles_freed_at_a_layer_removal(shown_dock, qtbot):
    viewer, dock, keep = shown_dock
    assert gc.get_freeze_count() > 10_000  # napari, Qt and the plugin
    ref = weakref.ref(keep[0])
    keep.clear()
    gc.collect()
    assert ref() is not None  # frozen: a full collection no longer walks it

    viewer.add_points(np.zeros((2, 3)), name="scratch")
    viewer.layers.remove("scratch")  # thawed for napari's own collection, frozen again after
    assert ref() is None
    assert gc.get_freeze_count() > 10_000

    dock.hide()
    assert gc.get_freeze_count() == 0


def test_freezing_can_be_turned_off(make_napari_viewer, qtbot, monkeypatch):
    from napari_dustrack._widgets._gc_quiet import ENV
    from napari_dustrack._widgets.main import DustrackWidget

    monkeypatch.setenv(ENV, "0")
    gc.unfreeze()
    viewer = make_napari_viewer(show=True)
    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    qtbot.waitUntil(dock.isVisible, timeout=5000)
    assert gc.get_freeze_count() == 0
