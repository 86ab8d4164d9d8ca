"""The "Model" tab: train the U-Net on the curated annotations, predict, list frames to review.

Training, prediction and the review ranking run in dask worker processes (:mod:`..jobs`), so
this process never imports torch and stays responsive; a crash there loses no annotations.
Messages from the worker (progress, loss values, predicted batches) arrive through a napari
generator worker thread that polls the job and yields them to the GUI thread.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import jobs, settings
from .._napari.geometry import like
from ..errors import DustrackError
from ..io.layers import points_to_table, table_to_points, table_to_tracks
from ..io.table import from_array, training_rows
from ..tracking.heatmap import HeatmapConfig
from ..tracking.heatmap.dataset import curated_points
from ..tracking.heatmap.store import has_model, read_meta
from ._loss_plot import LossPlot
from .common import cine_info, find_cine_layer, notify_error, set_frame

ANNOTATIONS = "annotations"
OUT_POINTS = "model"
OUT_TRACKS = "model tracks"
REDRAW_S = 0.5  # streamed predictions redraw the layers at most this often


class ModelWidget(QWidget):
    """Train / Retrain / Cancel / Predict, a loss curve, and the frames worth reviewing.

    Training data are the rows of the ``annotations`` Points layer that are manual or reviewed.
    The model lives in a folder (default ``<video>.dustrack/model``); training into a folder
    that holds a model with the same labels continues from it (iteration + 1).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.config = HeatmapConfig()
        self.job: jobs.Job | None = None
        self.worker = None
        self.review_table = None
        self.updates = 0  # redraws of the prediction layers (they grow while predicting)
        self._labels: list[str] = []
        self._xy = self._conf = None
        self._last_draw = 0.0
        self._cancel_requested = False
        self.last_meta = None

        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("model folder (default: next to the video)")
        browse = QPushButton("...", self)
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.minutes = QDoubleSpinBox(self)
        self.minutes.setRange(0.05, 600.0)
        self.minutes.setValue(self.config.minutes)
        self.minutes.setSuffix(" min")
        self.train_button = QPushButton("Train", self)
        self.retrain_button = QPushButton("Retrain", self)
        self.predict_button = QPushButton("Predict", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.train_button.clicked.connect(lambda: self.train(retrain=False))
        self.retrain_button.clicked.connect(lambda: self.train(retrain=True))
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        for b in (self.train_button, self.retrain_button, self.predict_button, self.cancel_button):
            buttons.addWidget(b)
        self.bar = QProgressBar(self)
        self.bar.setVisible(False)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.plot = LossPlot(self)
        self.review = QListWidget(self)
        self.review.itemClicked.connect(self._jump)

        self.run_on = QLineEdit(settings.load_settings().get("scheduler", ""), self)
        self.run_on.setPlaceholderText("local worker processes, or a dask scheduler tcp://host:8786")
        self.run_on.editingFinished.connect(self._store_run_on)
        form = QFormLayout()
        form.addRow("model", row)
        form.addRow("training time", self.minutes)
        form.addRow("run on", self.run_on)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addWidget(QLabel("Frames to review (click to go there):", self))
        layout.addWidget(self.review, 1)
        self._refresh_buttons()

    # ------------------------------------------------------------------ inputs
    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Model folder")
        if path:
            self.folder.setText(path)
            self._refresh_buttons()

    def _store_run_on(self) -> None:
        try:
            self.run_on.setText(settings.set_scheduler_address(self.run_on.text()))
        except DustrackError as exc:
            notify_error(exc)

    def video_path(self) -> str:
        path = cine_info(find_cine_layer(self.viewer)).get("path")
        if not path:
            raise DustrackError("open a cine first (the model reads frames from its file)")
        return str(path)

    def model_dir(self) -> str:
        text = self.folder.text().strip()
        if text:
            return text
        return str(Path(self.video_path() + ".dustrack") / "model")

    def curated_table(self):
        """Manual or reviewed rows of the ``annotations`` layer."""
        if ANNOTATIONS not in self.viewer.layers:
            raise DustrackError(f"no '{ANNOTATIONS}' points layer to train on")
        layer = self.viewer.layers[ANNOTATIONS]
        table = training_rows(points_to_table(layer.data, layer.features))
        curated_points(table)  # the same checks as the worker, before starting it
        return table

    def _refresh_buttons(self):
        busy = self.worker is not None
        try:
            exists = has_model(self.model_dir())
        except DustrackError:
            exists = False
        self.train_button.setEnabled(not busy)
        self.retrain_button.setEnabled(not busy and exists)
        self.predict_button.setEnabled(not busy and exists)
        self.cancel_button.setEnabled(busy)

    # ------------------------------------------------------------------ actions
    def train(self, retrain: bool = False):
        """Start training (Retrain: continue from the model in the folder, iteration + 1)."""
        try:
            video, folder, table = self.video_path(), self.model_dir(), self.curated_table()
            if has_model(folder) and not retrain:
                meta = read_meta(folder)
                show_info(f"continuing from model iteration {meta['iteration']} in {folder}")
            elif retrain and not has_model(folder):
                raise DustrackError("no model to retrain yet; press Train", folder)
        except DustrackError as exc:
            notify_error(exc)
            return None
        self.config.minutes = float(self.minutes.value())
        self.plot.clear()
        self.status.setText("starting a worker process...")
        return self._start(jobs.train_task, video, table, folder, self.config.to_dict(),
                           on_done=self._trained)

    def predict(self):
        """Predict every frame into the ``model`` Points and ``model tracks`` Tracks layers."""
        try:
            video, folder = self.video_path(), self.model_dir()
            meta = read_meta(folder)
        except DustrackError as exc:
            notify_error(exc)
            return None
        n = int(cine_info(find_cine_layer(self.viewer)).get("n_frames") or
                find_cine_layer(self.viewer).data.shape[0])
        self._labels = list(meta["labels"])
        self._xy = np.full((n, len(self._labels), 2), np.nan)
        self._conf = np.full((n, len(self._labels)), np.nan)
        self.updates = 0
        self.status.setText("predicting...")
        self._training_frames = list(meta.get("training_frames", []))
        return self._start(jobs.predict_task, video, folder, None, self.config.to_dict(),
                           on_done=self._predicted)

    def cancel(self):
        """Ask the worker to stop (training keeps its best checkpoint)."""
        self._cancel_requested = True
        if self.job is not None:
            self.job.cancel()
        self.status.setText("cancelling...")

    # ------------------------------------------------------------------ job plumbing
    def _start(self, func, *args, on_done):
        def poll():
            # Runs in a thread: starting a local cluster takes seconds, and the GUI must not wait.
            self.job = jobs.submit(func, *args, address=settings.scheduler_address())
            if self._cancel_requested:
                self.job.cancel()
            while not self.job.done():
                yield from self.job.messages()
                time.sleep(0.1)
            yield from self.job.messages()
            return self.job.result()

        worker = create_worker(poll)
        worker.yielded.connect(self._on_message)
        worker.returned.connect(on_done)
        worker.errored.connect(notify_error)
        worker.errored.connect(lambda exc: self.status.setText(f"failed: {exc}"))
        worker.finished.connect(lambda: self._finished(worker))
        self.worker = worker
        self._cancel_requested = False
        self.bar.setRange(0, 0)
        self.bar.setVisible(True)
        self._refresh_buttons()
        worker.start()
        return worker

    def _finished(self, worker):
        if self.worker is not worker:  # a follow-up job (the review ranking) is running
            return
        self.worker = None
        self.job = None
        self.bar.setVisible(False)
        self._refresh_buttons()

    def _on_message(self, msg: dict):
        kind = msg.get("kind")
        if kind == "progress":
            self.bar.setRange(0, max(int(msg["total"]), 1))
            self.bar.setValue(int(msg["done"]))
        elif kind == "log":
            self.plot.add(msg)
            text = f"step {int(msg['step'])}  loss {msg['loss']:.3f}"
            if "val_error_px" in msg:
                text += f"  validation error {msg['val_error_px']:.2f} px"
            self.status.setText(text)
        elif kind == "result":
            frames = np.asarray(msg["frames"], dtype=int)
            self._xy[frames] = np.asarray(msg["xy"], dtype=float)
            self._conf[frames] = np.asarray(msg["confidence"], dtype=float)
            if time.monotonic() - self._last_draw > REDRAW_S:
                self._draw()

    def _trained(self, meta: dict):
        m = meta["metrics"]
        note = " (cancelled: best checkpoint kept)" if m.get("cancelled") else ""
        self.status.setText(
            f"model iteration {meta['iteration']} saved{note}: {m['n_frames']} frames, "
            f"{m['steps']} steps, validation error {m.get('val_error_px', float('nan')):.2f} px"
        )
        self.last_meta = meta

    def _predicted(self, table):
        self._draw()
        self.status.setText(f"predicted {table['frame'].nunique()} frames; ranking frames to review...")
        try:
            video = self.video_path()
        except DustrackError as exc:
            notify_error(exc)
            return
        self._start(jobs.review_task, video, table, 20, self._training_frames, on_done=self._reviewed)

    def _reviewed(self, ranked):
        self.review_table = ranked
        self.review.clear()
        for row in ranked.itertuples():
            item = QListWidgetItem(f"frame {row.frame}: {row.reason}")
            item.setData(256, int(row.frame))  # Qt.UserRole
            self.review.addItem(item)
        self.status.setText(f"{len(ranked)} frames worth a look")

    def _jump(self, item):
        set_frame(self.viewer, int(item.data(256)))

    # ------------------------------------------------------------------ layers
    def _draw(self):
        self._last_draw = time.monotonic()
        table = from_array(self._xy, self._labels, source="model",
                           confidence=np.nan_to_num(self._conf, nan=0.0))
        if not len(table):
            return
        cine = find_cine_layer(self.viewer)
        geometry = like(cine) if cine is not None else {}  # seconds, mm, axis labels
        data, features = table_to_points(table)
        if OUT_POINTS in self.viewer.layers:
            layer = self.viewer.layers[OUT_POINTS]
            layer.data = data
            layer.features = features
        else:
            self.viewer.add_points(data, features=features, name=OUT_POINTS, **geometry, size=4,
                                   face_color="confidence", face_colormap="viridis",
                                   face_contrast_limits=(0.0, 1.0))
        tdata, tfeatures = table_to_tracks(table, self._labels)
        if OUT_TRACKS in self.viewer.layers:
            self.viewer.layers[OUT_TRACKS].data = tdata
            self.viewer.layers[OUT_TRACKS].features = tfeatures
        else:
            self.viewer.add_tracks(tdata, features=tfeatures, name=OUT_TRACKS, **geometry,
                                   tail_length=10)
        self.updates += 1
