"""The Model tab's review list: the frames most worth a look, and accepting the model's points.

The ranked frames are listed here and stored as ``metadata["review_frames"]`` of the ``model``
layer (the Annotate tab's G key walks them, the Measure plot marks them); Accept copies model
points into the annotations as reviewed, through the Annotate tab.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QWidget,
)

from ..errors import DustrackError
from ..io.layers import points_to_table
from ._predictions import visible_table
from .common import (
    ANNOTATIONS,
    REVIEW_KEY,
    Collapsible,
    button,
    current_frame,
    notify_error,
    page,
    set_frame,
)

OUT_POINTS = "model"


class ModelReview:
    """Part of :class:`~napari_dustrack._widgets.model.ModelWidget`: the review list."""

    def _build_review_box(self) -> QWidget:
        box = Collapsible("Predict and review", self)
        self._make_review_controls()
        self._make_accept_controls()
        grid = QGridLayout(box.body)
        grid.addWidget(self.predict_button, 0, 0)
        grid.addWidget(self.next_button, 0, 1)
        grid.addWidget(self.review, 1, 0, 1, 2)
        self._lay_out_accept(grid)
        return box

    def _make_review_controls(self) -> None:
        """The Predict and Next buttons and the ranked list of frames to review."""
        self.predict_button = button(
            "Predict",
            self.predict,
            "Predict every frame into the 'model' layer, then rank the frames worth a look",
        )
        self.next_button = button(
            "Next to review (G)",
            self.next_to_review,
            "Go to the next frame of the ranked list (key G on the canvas)",
        )
        self.review = QListWidget()
        self.review.setToolTip(
            "Frames most worth a look (low confidence, disagreement with optical "
            "flow); click one to go there"
        )
        self.review.setMaximumHeight(140)
        self.review.itemClicked.connect(self._jump)

    def _make_accept_controls(self) -> None:
        """The frame range and the smallest confidence of the Accept buttons."""
        self.from_spin, self.to_spin = QSpinBox(), QSpinBox()
        for spin in (self.from_spin, self.to_spin):
            spin.setRange(0, 99_999)
            spin.setToolTip("Frame range for 'Accept range'")
        self.min_conf = QDoubleSpinBox()
        self.min_conf.setRange(0.0, 1.0)
        self.min_conf.setSingleStep(0.05)
        self.min_conf.setValue(0.8)
        self.min_conf.setToolTip("Smallest confidence accepted by 'Accept confident'")

    def _lay_out_accept(self, grid: QGridLayout) -> None:
        """Rows 2-4 of ``grid``: the Accept buttons with their range and confidence."""
        grid.addWidget(
            button(
                "Accept this frame (A)",
                self.accept_frame,
                "Copy the model's points of this frame into the annotations as "
                "reviewed (Ctrl+Z undoes)",
            ),
            2,
            0,
            1,
            2,
        )
        rng = QHBoxLayout()
        for item in (QLabel("frames"), self.from_spin, QLabel("to"), self.to_spin):
            rng.addWidget(item)
        grid.addLayout(rng, 3, 0)
        conf = QHBoxLayout()
        conf.addWidget(QLabel("conf. >="))
        conf.addWidget(self.min_conf)
        grid.addLayout(conf, 3, 1)
        grid.addWidget(
            button(
                "Accept range",
                self.accept_range,
                "Copy the model's points of these frames into the annotations as reviewed",
            ),
            4,
            0,
        )
        grid.addWidget(
            button(
                "Accept confident",
                self.accept_confident,
                "Copy the model's points of every frame with at least this "
                "confidence into the annotations as reviewed",
            ),
            4,
            1,
        )

    def next_to_review(self) -> int | None:
        """Go to the next frame of the ranked list (after the current frame's place in it)."""
        annotate = page(self.viewer, "annotate")
        if annotate is not None:
            return annotate.next_to_review()
        frames = self.review_frames()
        if not frames:
            show_info("No frames to review yet: press Predict.")
            return None
        here = current_frame(self.viewer)
        frame = frames[(frames.index(here) + 1) % len(frames)] if here in frames else frames[0]
        set_frame(self.viewer, frame)
        return frame

    def review_frames(self) -> list[int]:
        layer = self.viewer.layers[OUT_POINTS] if OUT_POINTS in self.viewer.layers else None
        return list(layer.metadata.get(REVIEW_KEY, [])) if layer is not None else []

    def accept_frame(self) -> int:
        f = current_frame(self.viewer)
        return self._accept(f, f, 0.0)

    def accept_range(self) -> int:
        return self._accept(self.from_spin.value(), self.to_spin.value(), 0.0)

    def accept_confident(self) -> int:
        return self._accept(None, None, float(self.min_conf.value()))

    def _accept(self, start, end, min_confidence) -> int:
        annotate = page(self.viewer, "annotate")
        if annotate is None:
            notify_error(
                DustrackError("open the Annotate tab: accepted points go to its annotations")
            )
            return 0
        return annotate.accept_predictions(
            start, end, min_confidence=min_confidence, source=OUT_POINTS
        )

    def _fill_copy(self):
        """The annotations' optical-flow rows, copied: ``(data, features)`` or None."""
        if ANNOTATIONS not in self.viewer.layers:
            return None
        layer = self.viewer.layers[ANNOTATIONS]
        rows = np.flatnonzero((layer.features["source"] == "flow").to_numpy())
        if not len(rows):
            return None
        return np.asarray(layer.data)[rows], layer.features.iloc[rows].reset_index(drop=True)

    def fill_rows(self) -> pd.DataFrame | None:
        """The annotations' optical-flow rows with their confidence (any thread's copy): frames
        where the fill was unreliable go to the top of the review list."""
        return fill_table(self._fill_copy())

    def _reviewed(self, ranked):
        self.review_table = ranked
        self.review.clear()
        for row in ranked.itertuples():
            item = QListWidgetItem(f"frame {row.frame}: {row.reason}")
            item.setData(256, int(row.frame))  # Qt.UserRole
            self.review.addItem(item)
        if OUT_POINTS in self.viewer.layers:
            layer = self.viewer.layers[OUT_POINTS]
            layer.metadata = {**layer.metadata, REVIEW_KEY: [int(f) for f in ranked["frame"]]}
            measure = page(self.viewer, "measure")
            if measure is not None:
                measure.schedule_refresh()
        self.status.setText(
            f"{len(ranked)} frames worth a look: G goes to the next one; drag a "
            "wrong point to correct it, A accepts a frame, then Retrain"
        )

    def _jump(self, item):
        set_frame(self.viewer, int(item.data(256)))

    def prediction_table(self) -> pd.DataFrame | None:
        """The model's points shown so far (hidden, not yet predicted rows left out)."""
        if OUT_POINTS not in self.viewer.layers:
            return None
        return visible_table(self.viewer.layers[OUT_POINTS])


def fill_table(copy) -> pd.DataFrame | None:
    return None if copy is None else points_to_table(*copy)
