"""The "Smooth" tab: optical-flow smoothing of a points layer into a ``smoothed`` Tracks layer."""

from __future__ import annotations

import numpy as np

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from ..errors import Cancelled, DustrackError
from ..io.layers import points_to_table
from ..io.table import tracks_array
from ._predictions import PredictionLayers
from .common import TaskBar, cine_info, find_cine_layer, open_frames, points_layers, set_choices

OUT_TRACKS = "smoothed"
OUT_POINTS = "smoothed points"
MODES = ("fusion", "dustrack", "fast")


class SmoothWidget(QWidget):
    """Choose the source points layer, the window and the mode; run in the background.

    The result is a Tracks layer ``smoothed`` and a Points layer ``smoothed points``
    (``source=smoothed``), shown beside the input. Everything but reading the chosen layer runs
    in a worker thread; the result is written into the layers in small pieces.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.source = QComboBox(self)
        self.seconds = QDoubleSpinBox(self)
        self.seconds.setRange(0.01, 60.0)
        self.seconds.setSingleStep(0.1)
        self.seconds.setValue(0.5)
        self.seconds.setSuffix(" s")
        self.frames = QSpinBox(self)
        self.frames.setRange(2, 100000)
        self.frames.setValue(15)
        self.frames.setSuffix(" frames")
        self.mode = QComboBox(self)
        self.mode.addItems(MODES)
        self.run_button = QPushButton("Smooth", self)
        self.run_button.clicked.connect(self.run)
        self.output = PredictionLayers(napari_viewer, OUT_POINTS, OUT_TRACKS, "smoothed", filled=True)
        self.source.setToolTip("The points layer to smooth (usually 'model' or 'annotations')")
        self.seconds.setToolTip("Smoothing window in seconds (needs the cine's frame rate)")
        self.frames.setToolTip("Smoothing window in frames")
        self.mode.setToolTip("fusion: optical flow fused with the points (default); dustrack: the "
                             "DUSTrack paper's filter; fast: a plain windowed filter")
        self.run_button.setToolTip("Smooth in the background into the 'smoothed' layers")
        self.hint = QLabel("", self)
        self.hint.setWordWrap(True)
        self.taskbar = TaskBar(self)

        form = QFormLayout()
        form.addRow("source points", self.source)
        form.addRow("window", self.seconds)
        form.addRow("", self.frames)
        form.addRow("mode", self.mode)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.taskbar)
        layout.addWidget(self.hint)
        layout.addStretch(1)

        self.seconds.valueChanged.connect(self._seconds_changed)
        self.frames.valueChanged.connect(self._frames_changed)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._refresh)
        self._refresh()

    # -- layer bookkeeping -------------------------------------------------------------------
    def _fps(self):
        return cine_info(find_cine_layer(self.viewer)).get("fps")

    def _refresh(self, *_):
        names = [layer.name for layer in points_layers(self.viewer) if layer.name != OUT_POINTS]
        set_choices(self.source, names)
        fps = self._fps()
        self.seconds.setEnabled(bool(fps))
        if fps:
            self._seconds_changed(self.seconds.value())
        self.hint.setText("" if fps or find_cine_layer(self.viewer) is None else
                          "This cine has no frame rate: set the window in frames.")

    def _seconds_changed(self, value):
        fps = self._fps()
        if fps:
            self.frames.blockSignals(True)
            self.frames.setValue(max(2, int(round(value * fps))))
            self.frames.blockSignals(False)

    def _frames_changed(self, value):
        fps = self._fps()
        if fps:
            self.seconds.blockSignals(True)
            self.seconds.setValue(value / fps)
            self.seconds.blockSignals(False)

    # -- running -----------------------------------------------------------------------------
    def run(self):
        """Smooth the chosen layer in a worker thread (progress bar, Cancel)."""
        cine = find_cine_layer(self.viewer)
        name = self.source.currentText()
        if cine is None or not name or name not in self.viewer.layers:
            show_error("Open a cine and choose a points layer to smooth.")
            return None
        points = self.viewer.layers[name]
        # copies: the user may edit the layer while the worker reads it
        data, features = np.array(points.data), points.features.copy()
        shown = np.array(points.shown, dtype=bool)
        n_frames = int(cine_info(cine).get("n_frames") or cine.data.shape[0])
        mode, window = self.mode.currentText(), int(self.frames.value())
        from ..tracking.smoothing import check_inputs

        try:  # the window and mode, before any work (the points are checked in the worker)
            check_inputs(n_frames, np.zeros((n_frames, 1, 2)), window, mode)
        except DustrackError as exc:
            show_error(str(exc))
            return None
        frames = open_frames(cine)

        def job(progress=None, cancel=None):
            from ..tracking.smoothing import check_inputs, smooth

            try:  # the same conversion and checks as the command line
                table = points_to_table(data[shown], features[shown].reset_index(drop=True))
                xy, conf, labels = tracks_array(table, n_frames, name)
                check_inputs(n_frames, xy, window, mode, conf, labels, name)
                out = smooth(frames, xy, window, mode, confidence=conf, labels=labels,
                             progress=progress, cancel=cancel)
                return out, conf, labels
            except Cancelled:
                return None  # a cancel is an answer, not an error
            finally:
                _close(frames)

        def done(result):
            if result is None:
                show_info("Smoothing cancelled.")
                return
            out, conf, labels = result
            self.output.begin(labels, n_frames, cine)
            self.output.put(np.arange(len(out)), out, conf)
            self.output.finish()
            show_info(f"smoothed {len(labels)} label(s) into '{OUT_TRACKS}'")

        return self.taskbar.run(job, on_done=done, label=f"smoothing ({mode})")


def _close(frames):
    close = getattr(frames, "close", None)
    if close is not None:
        try:
            close()
        except DustrackError:
            pass
