"""The "DUSTrack" dock widget: one tab per stage of the loop."""

from __future__ import annotations

from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from .annotate import AnnotateWidget
from .measure import MeasureWidget
from .model import ModelWidget
from .smooth import SmoothWidget

TABS = (("Annotate", AnnotateWidget), ("Model", ModelWidget), ("Smooth", SmoothWidget),
        ("Measure", MeasureWidget))


class DustrackWidget(QWidget):
    """Annotate -> Model -> Smooth -> Measure, as tabs; each tab takes the viewer."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.tabs = QTabWidget(self)
        self.pages: dict[str, QWidget] = {}
        for title, page_class in TABS:
            self.pages[title] = page_class(napari_viewer)
            self.tabs.addTab(self.pages[title], title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
