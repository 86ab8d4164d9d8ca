"""Full garbage collections kept short while the dock is on screen.

Python's cyclic collector walks every tracked object in a full (generation 2) collection.
With napari, Qt, vispy and the plugin loaded that is ~250,000-350,000 objects: 130-400 ms on
a 2-core machine, landing on whatever the user happens to be doing when the allocations
cross the collector's threshold (3-7 times in a review session, `docs/benchmarks/gui.md`).
Almost all of those objects live as long as the viewer (modules, napari's and Qt's wrappers,
the dock), so while the dock is shown they are frozen (:func:`gc.freeze`): a full collection
then walks only what was made since, a few ms.

What freezing costs: a frozen object is still freed by reference counting; only one kept
alive by a reference cycle waits until the objects are thawed. They are thawed while a layer
is being removed (napari collects right after removing a layer's visual, so a removed layer's
cycles are freed as they were; the survivors are frozen again once the layer is gone) and when
the dock is hidden or closed. ``NAPARI_DUSTRACK_GC_FREEZE=0`` turns it off.
"""

from __future__ import annotations

import gc
import os

from qtpy.QtCore import QEvent, QObject

ENV = "NAPARI_DUSTRACK_GC_FREEZE"


def enabled() -> bool:
    """Whether the user left freezing on (the default)."""
    return os.environ.get(ENV, "1").strip() not in ("0", "false", "no", "off")


class QuietCollections(QObject):
    """Freezes the collector's objects while ``dock`` is shown (see the module docstring).

    Parameters
    ----------
    dock : QWidget
        The plugin's dock; its show and hide events switch freezing on and off.
    viewer : napari.Viewer
        Its layer removals thaw the objects for napari's own collection.
    """

    def __init__(self, dock, viewer):
        super().__init__(dock)
        self._dock = dock
        if not enabled():
            return
        dock.installEventFilter(self)
        viewer.layers.events.removing.connect(self._thaw)
        viewer.layers.events.removed.connect(self._freeze_if_shown)
        dock.destroyed.connect(gc.unfreeze)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Show:
            gc.freeze()
        elif event.type() == QEvent.Type.Hide:
            gc.unfreeze()
        return False

    def _thaw(self, event=None) -> None:
        gc.unfreeze()

    def _freeze_if_shown(self, event=None) -> None:
        try:
            shown = self._dock.isVisible()
        except RuntimeError:  # the dock's C++ object is gone (viewer closing)
            return
        if shown:
            gc.freeze()
