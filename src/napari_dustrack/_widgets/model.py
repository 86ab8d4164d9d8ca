"""The "Model" tab: train the U-Net on the curated annotations, predict, review, accept.

Training, prediction and the review ranking run in dask worker processes (:mod:`..workers`), so
this process never imports torch and stays responsive; a crash there loses no annotations.
Messages from the worker (progress, loss values, predicted batches) arrive through a napari
generator worker thread that polls the job and yields them to the GUI thread; predicted batches
are written into the ``model`` layer in place, in small pieces (:mod:`._predictions`).

The review loop: the ranked frames are listed here and stored as ``metadata["review_frames"]``
of the ``model`` layer (the Annotate tab's G key walks them, the Measure plot marks them);
dragging a model point makes a manual annotation; Accept copies model points into the
annotations as reviewed; Retrain continues from the model with those corrections.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pandas as pd
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from .. import settings, workers
from ..errors import Cancelled, DustrackError
from ..io import sidecar
from ..io.layers import points_to_table
from ..io.sources import PointSource
from ..io.table import labels_of, training_rows
from ..tracking.heatmap import HeatmapConfig
from ..tracking.heatmap.dataset import curated_points
from ..tracking.heatmap.store import has_model, read_meta
from ._loss_plot import LossPlot
from ._model_review import OUT_POINTS, ModelReview, fill_table
from ._predictions import PredictionLayers
from .common import (
    ANNOTATIONS,
    Collapsible,
    button,
    cancel_on_exit,
    cine_info,
    find_cine_layer,
    notify_error,
    register_page,
)

OUT_TRACKS = "model tracks"
MODEL_EXTRA = 'pip install "napari-dustrack[model]"'
NEEDED = (("torch", "torch"), ("segmentation_models_pytorch", "segmentation-models-pytorch"))


def missing_model_packages() -> list[str]:
    """The model's packages this Python lacks (looked up, not imported: torch stays out)."""
    return [dist for module, dist in NEEDED if importlib.util.find_spec(module) is None]


def set_aside(folder: str) -> Path:
    """Rename a model folder to ``<folder>.iteration-<k>[-n]`` (a fresh start loses nothing)."""
    folder = Path(folder)
    k = read_meta(folder).get("iteration", 0)
    target = folder.with_name(f"{folder.name}.iteration-{k}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.iteration-{k}-{n}")
    folder.rename(target)
    return target


def _digest(table: pd.DataFrame) -> int:
    """A fingerprint of the curated rows: a retrain on the same rows learns nothing new."""
    cols = table[["frame", "label", "x", "y"]].round(2)
    return int(pd.util.hash_pandas_object(cols, index=False).sum())


class ModelWidget(ModelReview, QWidget):
    """Train / Retrain / Cancel / Predict, a loss curve, the frames worth reviewing, Accept.

    Training data are the rows of the ``annotations`` Points layer that are manual or reviewed.
    The model lives in a folder (default ``<video>.dustrack/model``). **Train** starts from
    scratch (an existing model there is renamed aside, never deleted); **Retrain** continues
    from it (iteration + 1).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.config = HeatmapConfig()
        self.job: workers.Job | None = None
        self.worker = None
        self.review_table = None
        self.last_meta = None
        self._labels: list[str] = []
        self._training_frames: list[int] = []
        self._cancel_requested = False
        self._trained_digest: dict[str, int] = {}
        self._shown_meta_for: str | None = None
        self._pending_digest: tuple[str | None, int | None] = (None, None)
        self._predicted_table = None  # the last prediction, ranked once it is drawn
        self.output = PredictionLayers(
            napari_viewer, OUT_POINTS, OUT_TRACKS, PointSource.MODEL.value
        )
        self.output.finished.connect(self._rank)
        self._build()
        register_page(napari_viewer, "model", self)
        cancel_on_exit(self)  # a training still polled when Python exits is cancelled
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self._on_layers_changed)
        napari_viewer.events.theme.connect(lambda _event: self.plot.update())
        self._refresh_buttons()
        self._show_saved_model()

    @property
    def updates(self) -> int:
        """Pieces of predictions written into the layer so far."""
        return self.output.pieces

    # ------------------------------------------------------------------ construction
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_model_box())
        layout.addWidget(self._build_train_box())
        layout.addWidget(self._build_review_box())
        layout.addStretch(1)

    def _build_model_box(self) -> QWidget:
        box = Collapsible("Model folder and workers", self)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("default: <video>.dustrack/model")
        self.folder.setToolTip(
            "Folder of the model (model.json + weights); empty: next to the video"
        )
        self.folder.editingFinished.connect(self._on_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        browse = button("...", self._browse, "Choose the model folder")
        browse.setMaximumWidth(30)
        row.addWidget(browse)
        self.run_on = QLineEdit(settings.load_settings().get("scheduler", ""))
        self.run_on.setPlaceholderText("local workers, or tcp://host:8786")
        self.run_on.setToolTip(
            "Where training and prediction run: empty for worker processes on "
            "this computer, or the address of a dask scheduler"
        )
        self.run_on.editingFinished.connect(self._store_run_on)
        form = QFormLayout(box.body)
        form.addRow("model", row)
        form.addRow("run on", self.run_on)
        return box

    def _build_train_box(self) -> QWidget:
        box = Collapsible("Train", self)
        self.minutes = QDoubleSpinBox()
        self.minutes.setRange(0.05, 600.0)
        self.minutes.setValue(self.config.minutes)
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip(
            "Training time budget (training may stop earlier when it stops improving)"
        )
        self.train_button = button(
            "Train (from scratch)",
            lambda: self.train(retrain=False),
            "Train a new model on the manual and reviewed annotations; an "
            "existing model in the folder is renamed aside, not deleted",
        )
        self.retrain_button = button(
            "Retrain (continue)",
            lambda: self.train(retrain=True),
            "Continue training the model in the folder with the current "
            "annotations, corrections included (iteration + 1)",
        )
        self.cancel_button = button(
            "Cancel", self.cancel, "Stop the running job (training keeps its best checkpoint)"
        )
        self.cancel_button.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = LossPlot(viewer=self.viewer)
        grid = QGridLayout(box.body)
        grid.addWidget(QLabel("time"), 0, 0)
        grid.addWidget(self.minutes, 0, 1)
        grid.addWidget(self.train_button, 1, 0)
        grid.addWidget(self.retrain_button, 1, 1)
        grid.addWidget(self.bar, 2, 0)
        grid.addWidget(self.cancel_button, 2, 1)
        grid.addWidget(self.status, 3, 0, 1, 2)
        grid.addWidget(self.plot, 4, 0, 1, 2)
        return box

    # ------------------------------------------------------------------ inputs
    def _browse(self):
        path = QFileDialog.getExistingDirectory(self, "Model folder")
        if path:
            self.folder.setText(path)
            self._on_folder()

    def _on_folder(self) -> None:
        self._refresh_buttons()
        self._show_saved_model()

    def _on_layers_changed(self, event=None) -> None:
        self._refresh_buttons()
        self._show_saved_model()
        cine = find_cine_layer(self.viewer)
        n = int(cine_info(cine).get("n_frames") or (cine.data.shape[0] if cine is not None else 1))
        for spin in (self.from_spin, self.to_spin):
            spin.setMaximum(max(n - 1, 0))

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
        return str(sidecar.model_dir(self.video_path()))

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

    def _show_saved_model(self) -> None:
        """On opening a cine (or choosing a folder) with a model: its iteration, training time
        and loss history, as they were saved."""
        if self.worker is not None:
            return
        try:
            folder = self.model_dir()
            meta = read_meta(folder) if has_model(folder) else None
        except DustrackError:
            return
        if meta is None or folder == self._shown_meta_for:
            return
        self._shown_meta_for = folder
        self.last_meta = meta
        self.plot.set_history(meta.get("history"))
        self.status.setText(_describe(meta, "saved"))

    # ------------------------------------------------------------------ actions
    def _check_ready(self) -> None:
        missing = missing_model_packages()
        if missing:
            raise DustrackError(
                f"the model needs {' and '.join(missing)}, which this Python lacks; "
                f"install them with: {MODEL_EXTRA}"
            )

    def train(self, retrain: bool = False):
        """Train from scratch (an existing model is set aside) or continue it (``retrain``)."""
        try:
            self._check_ready()
            video, folder = self.video_path(), self.model_dir()
            if retrain and not has_model(folder):
                raise DustrackError("no model to retrain yet; press Train", folder)
            table = self.curated_table()
            if retrain:
                self._check_retrain(folder, table)
            elif has_model(folder):
                aside = set_aside(folder)
                show_info(f"The previous model was moved to {aside.name}; training a new one.")
        except DustrackError as exc:
            notify_error(exc)
            self.status.setText(f"not started: {exc}")
            return None
        self.config.minutes = float(self.minutes.value())
        self.plot.clear()
        self._pending_digest = (folder, _digest(table))
        self.status.setText("starting a worker process...")
        return self._start(
            workers.train_task, video, table, folder, self.config.to_dict(), on_done=self._trained
        )

    def _check_retrain(self, folder: str, table) -> None:
        meta = read_meta(folder)
        labels = labels_of(table)
        if sorted(labels) != sorted(meta["labels"]):
            raise DustrackError(
                f"the model has labels {list(meta['labels'])} but the annotations "
                f"have {labels}; Train (from scratch) or choose another folder",
                folder,
            )
        if self._trained_digest.get(folder) == _digest(table):
            raise DustrackError(
                "no new or corrected labels since the last training: correct or "
                "accept some predictions first"
            )

    def predict(self):
        """Predict every frame into the ``model`` Points and ``model tracks`` Tracks layers."""
        try:
            self._check_ready()
            video, folder = self.video_path(), self.model_dir()
            meta = read_meta(folder)
        except DustrackError as exc:
            notify_error(exc)
            return None
        cine = find_cine_layer(self.viewer)
        n = int(cine_info(cine).get("n_frames") or cine.data.shape[0])
        self._labels = list(meta["labels"])
        self._training_frames = list(meta.get("training_frames", []))
        self.output.begin(self._labels, n, cine)
        self.status.setText("predicting...")
        return self._start(
            workers.predict_task,
            video,
            folder,
            None,
            self.config.to_dict(),
            on_done=self._predicted,
        )

    def cancel(self):
        """Ask the worker to stop (training keeps its best checkpoint); also while it starts."""
        self._cancel_requested = True
        if self.job is not None:
            self.job.cancel()
        self.status.setText("cancelling...")

    # ------------------------------------------------------------------ job plumbing
    def _start(self, func, *args, on_done, prepare=None):
        """Run ``func(*args, **prepare())`` in a worker process; ``prepare`` (optional) runs in
        the polling thread, for inputs too slow to make in the GUI thread."""
        cancelled = self._is_cancel_requested

        def poll():
            # Runs in a thread: starting a local cluster takes seconds, and the GUI must not wait.
            kwargs = prepare() if prepare is not None else {}
            self.job = workers.submit(
                func, *args, address=settings.scheduler_address(), cancel=cancelled, **kwargs
            )
            if cancelled():
                self.job.cancel()
            while not self.job.done():
                yield from self.job.messages()
                time.sleep(0.1)
            yield from self.job.messages()
            return self.job.result()

        from napari.qt.threading import create_worker

        worker = create_worker(poll, _ignore_errors=True)
        worker.yielded.connect(self._on_message)
        worker.returned.connect(on_done)
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self._finished(worker))
        self.worker = worker
        self._cancel_requested = False
        self.bar.setRange(0, 0)
        self.bar.setVisible(True)
        self._refresh_buttons()
        worker.start()
        return worker

    def _is_cancel_requested(self) -> bool:
        return self._cancel_requested

    def _failed(self, exc) -> None:
        if isinstance(exc, Cancelled):
            self.status.setText("cancelled")
            show_info("Cancelled.")
            return
        notify_error(exc)
        self.status.setText(f"failed: {exc}")

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
            self.output.put(msg["frames"], msg["xy"], msg["confidence"])

    def _trained(self, meta: dict):
        self.status.setText(_describe(meta, "saved"))
        self.last_meta = meta
        self._shown_meta_for = None
        folder, digest = self._pending_digest
        if folder is not None:
            self._trained_digest[folder] = digest

    def _predicted(self, table):
        self._predicted_table = table
        self.status.setText(f"predicted {table['frame'].nunique()} frames; drawing...")
        self.output.finish()  # -> _rank once the last piece is drawn

    def _rank(self):
        table = self._predicted_table
        if table is None:
            return
        self._predicted_table = None
        self.status.setText(
            f"predicted {table['frame'].nunique()} frames; ranking frames to review..."
        )
        try:
            video = self.video_path()
        except DustrackError as exc:
            notify_error(exc)
            return
        fill = self._fill_copy()  # tabulated in the polling thread (80,000 rows: ~50 ms)
        self._start(
            workers.review_task,
            video,
            table,
            20,
            self._training_frames,
            on_done=self._reviewed,
            prepare=lambda: {"flow": fill_table(fill)},
        )


def _describe(meta: dict, verb: str) -> str:
    m = meta.get("metrics", {})
    note = " (cancelled: best checkpoint kept)" if m.get("cancelled") else ""
    seconds = float(m.get("wall_seconds") or m.get("train_seconds") or 0.0)
    return (
        f"model iteration {meta['iteration']} {verb}{note}: {m.get('n_frames', '?')} frames, "
        f"{m.get('steps', '?')} steps in {seconds / 60:.1f} min, validation error "
        f"{m.get('val_error_px', float('nan')):.2f} px"
    )
