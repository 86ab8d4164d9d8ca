"""The "Smooth" tab: optical-flow smoothing of a points layer into a ``smoothed`` Tracks layer."""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from .._napari.geometry import like
from ..errors import Cancelled, DustrackError
from ..io.layers import points_to_table, table_to_points, table_to_tracks
from ..commands.smooth import tracks_array
from ..io.table import from_array
from .common import TaskBar, cine_info, find_cine_layer, open_frames, set_choices

OUT_TRACKS = "smoothed"
OUT_POINTS = "smoothed points"
MODES = ("fusion", "dustrack", "fast")


class SmoothWidget(QWidget):
    """Choose the source points layer, the window and the mode; run in the background.

    The result is a Tracks layer ``smoothed`` and a Points layer ``smoothed points``
    (``source=smoothed``), shown beside the input.
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
        names = [layer.name for layer in self.viewer.layers
                 if layer._type_string == "points" and layer.name != OUT_POINTS]
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
        from ..tracking.smoothing import check_inputs, smooth

        cine = find_cine_layer(self.viewer)
        name = self.source.currentText()
        if cine is None or not name:
            show_error("Open a cine and choose a points layer to smooth.")
            return None
        points = self.viewer.layers[name]
        table = points_to_table(points.data, points.features)
        n_frames = int(cine_info(cine).get("n_frames") or cine.data.shape[0])
        try:  # the same conversion as the command line, so both give the same result
            xy, conf, labels = tracks_array(table, n_frames, name)
        except DustrackError as exc:
            show_error(str(exc))
            return None
        mode, window = self.mode.currentText(), int(self.frames.value())
        try:  # bad input is reported here, before any work starts
            check_inputs(n_frames, xy, window, mode, conf, labels, name)
        except DustrackError as exc:
            show_error(str(exc))
            return None
        frames = open_frames(cine)

        def job(*args, **kwargs):
            # a cancel is an answer, not an error (the task bar would re-raise it in Qt's loop)
            try:
                return smooth(*args, **kwargs)
            except Cancelled:
                return None
            finally:
                _close(frames)

        def done(out):
            if out is None:
                show_info("Smoothing cancelled.")
            else:
                self._show(out, labels, conf, cine)

        return self.taskbar.run(job, frames, xy, window, mode, confidence=conf, labels=labels,
                                on_done=done, label=f"smoothing ({mode})")

    def _show(self, out, labels, conf, cine):
        table = from_array(out, labels, source="smoothed", confidence=conf)
        geometry = like(cine)  # seconds, mm, axis labels
        data, features = table_to_tracks(table, labels)
        if OUT_TRACKS in self.viewer.layers:
            layer = self.viewer.layers[OUT_TRACKS]
            layer.data, layer.features = data, features
        else:
            self.viewer.add_tracks(data, features=features, name=OUT_TRACKS, **geometry,
                                   tail_length=10)
        pdata, pfeatures = table_to_points(table)
        if OUT_POINTS in self.viewer.layers:
            layer = self.viewer.layers[OUT_POINTS]
            layer.data, layer.features = pdata, pfeatures
        else:
            self.viewer.add_points(pdata, features=pfeatures, name=OUT_POINTS, **geometry,
                                   size=4, face_color="transparent", border_color="yellow")
        show_info(f"smoothed {len(labels)} label(s) into '{OUT_TRACKS}'")


def _close(frames):
    close = getattr(frames, "close", None)
    if close is not None:
        try:
            close()
        except DustrackError:
            pass
