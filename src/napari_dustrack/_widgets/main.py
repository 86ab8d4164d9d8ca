"""The "DUSTrack" dock widget: one tab per stage of the loop."""

from __future__ import annotations

import importlib
import logging

from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

log = logging.getLogger(__name__)

# (tab title, module, class); each class takes the viewer.
TABS = (
    ("Annotate", "napari_dustrack._widgets.annotate", "AnnotateWidget"),
    ("Model", "napari_dustrack._widgets.model", "ModelWidget"),
    ("Smooth", "napari_dustrack._widgets.smooth", "SmoothWidget"),
    ("Measure", "napari_dustrack._widgets.measure", "MeasureWidget"),
)


class DustrackWidget(QWidget):
    """Annotate -> Model -> Smooth -> Measure, as tabs."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.tabs = QTabWidget(self)
        self.pages: dict[str, QWidget] = {}
        for title, module_name, class_name in TABS:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            page = getattr(module, class_name)(napari_viewer)
            self.pages[title] = page
            self.tabs.addTab(page, title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
