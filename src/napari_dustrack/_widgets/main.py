"""The "DUSTrack" dock widget: one tab per stage of the loop.

Each page sits in a vertical scroll area no wider than ~420 px, so the dock fits beside the
canvas on a 1280 x 800 screen; a hidden page does no work (see each page).
"""

from __future__ import annotations

from qtpy.QtWidgets import QSizePolicy, QTabWidget, QVBoxLayout, QWidget

from ._gc_quiet import QuietCollections
from .annotate import AnnotateWidget
from .common import PAGE_WIDTH, preload_modules, scroll_page
from .measure import MeasureWidget
from .model import ModelWidget
from .smooth import SmoothWidget

TABS = (
    ("Annotate", AnnotateWidget),
    ("Model", ModelWidget),
    ("Smooth", SmoothWidget),
    ("Measure", MeasureWidget),
)
TIPS = {
    "Annotate": "Labels, keyframes, optical flow and review of the annotations",
    "Model": "Train the heatmap model, predict, review the worst frames, accept, retrain",
    "Smooth": "Optical-flow smoothing of predicted points into tracks",
    "Measure": "Measures over time, plots and exports",
}


class DustrackWidget(QWidget):
    """Annotate -> Model -> Smooth -> Measure, as tabs; each tab takes the viewer."""

    def __init__(self, napari_viewer):
        super().__init__()
        preload_modules()
        self.viewer = napari_viewer
        self.tabs = QTabWidget(self)
        self.pages: dict[str, QWidget] = {}
        for i, (title, page_class) in enumerate(TABS):
            self.pages[title] = page_class(napari_viewer)
            self.tabs.addTab(scroll_page(self.pages[title]), title)
            self.tabs.setTabToolTip(i, TIPS[title])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tabs)
        self.setMaximumWidth(PAGE_WIDTH + 40)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Ignored)
        self.collections = QuietCollections(self, napari_viewer)

    def show_page(self, title: str) -> QWidget:
        """Bring the tab ``title`` to the front; returns its page."""
        self.tabs.setCurrentIndex([t for t, _ in TABS].index(title))
        return self.pages[title]
