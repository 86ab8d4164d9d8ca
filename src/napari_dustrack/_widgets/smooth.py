"""The "Smooth" tab: optical-flow smoothing of a points layer, or the final tracks, into the
``smoothed`` Tracks and ``smoothed points`` Points layers.

Modes are the smoother's (:data:`napari_dustrack.tracking.smoothing.MODES`) plus ``final
tracks`` (:func:`napari_dustrack.tracking.final.final_tracks`): the annotations' accepted points
as anchors, the keyframe fill's flow points weighed by their confidence, and the ``model``
layer's predictions with theirs, the model's systematic error measured and removed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import Cancelled, DustrackError
from ..io.layers import points_to_table
from ..io.sources import PointSource
from ..io.table import labels_of, to_array, tracks_array
from ..tracking.smoothing import MODES as SMOOTHER_MODES
from ._predictions import PredictionLayers, shown_copy
from .common import (
    ANNOTATIONS,
    TaskBar,
    cine_info,
    find_cine_layer,
    open_frames,
    page,
    points_layers,
    set_choices,
)

OUT_TRACKS = "smoothed"
OUT_POINTS = "smoothed points"
MODEL_POINTS = "model"  # the Model tab's predictions
FINAL = "final tracks"
MODES = tuple(SMOOTHER_MODES) + (FINAL,)


def anchor_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The annotations a person placed or accepted after looking: manual points and reviewed
    predictions. Flow points, accepted or not, are not anchors: they carry their confidence
    (an accepted point the flow was unsure of must not be pinned)."""
    return table[
        (table["source"] == PointSource.MANUAL)
        | (table["reviewed"] & (table["source"] != PointSource.FLOW))
    ]


def _layer_copy(layer):
    """:func:`shown_copy` of a Points layer; None for no layer."""
    return None if layer is None else shown_copy(layer)


def _table(copy, name: str) -> pd.DataFrame | None:
    """The point table of a :func:`_layer_copy` (worker thread); None for none or no rows."""
    if copy is None or len(copy[0]) == 0:
        return None
    try:
        return points_to_table(*copy)
    except DustrackError as exc:
        raise DustrackError(f"layer '{name}': {exc.problem}") from None


def anchored(xy: np.ndarray, labels, annotations: pd.DataFrame | None):
    """``(xy, anchors)``: the accepted annotations' positions put in place of ``xy``'s and
    marked (N, L) for the smoother to keep; ``anchors`` is None when there are none."""
    if annotations is None:
        return xy, None
    ann, _ = to_array(anchor_rows(annotations), labels, len(xy))
    anchors = np.isfinite(ann).all(axis=2)
    if not anchors.any():
        return xy, None
    xy = np.array(xy, copy=True)
    xy[anchors] = ann[anchors]
    return xy, anchors


def final_inputs(annotations: pd.DataFrame | None, model: pd.DataFrame | None, n_frames: int):
    """Keyword arguments of :func:`~napari_dustrack.tracking.final.final_tracks` from the
    annotations and the model's point tables (worker thread)."""
    if annotations is None:
        raise DustrackError(
            f"final tracks need the '{ANNOTATIONS}' layer: annotate keyframes first (Annotate tab)"
        )
    labels = labels_of(annotations)
    if model is not None:
        unknown = sorted(set(labels_of(model)) - set(labels))
        if unknown:
            raise DustrackError(
                f"the '{MODEL_POINTS}' layer has label(s) {unknown} that the "
                f"annotations do not ({labels}); add or rename labels first"
            )
    ann, _ = to_array(anchor_rows(annotations), labels, n_frames)
    kwargs = {"annotations": ann, "labels": labels}
    flow = annotations[annotations["source"] == PointSource.FLOW]
    for name, table in (("flow", flow if len(flow) else None), ("model", model)):
        if table is not None:
            kwargs[name], _ = to_array(table, labels, n_frames)
            kwargs[f"{name}_confidence"], _ = to_array(table, labels, n_frames, column="confidence")
    return kwargs


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
        self.mode.currentTextChanged.connect(self._on_mode)
        self.run_button = QPushButton("Smooth", self)
        self.run_button.clicked.connect(self.run)
        self.output = PredictionLayers(
            napari_viewer, OUT_POINTS, OUT_TRACKS, PointSource.SMOOTHED.value, filled=True
        )
        self.source.setToolTip("The points layer to smooth (usually 'model' or 'annotations')")
        self.seconds.setToolTip("Smoothing window in seconds (needs the cine's frame rate)")
        self.frames.setToolTip("Smoothing window in frames")
        self.mode.setToolTip(
            "fusion: optical flow fused with the points, the manual and "
            "accepted annotations kept (default); dustrack: the DUSTrack paper's "
            "filter; fast: a plain windowed filter; final tracks: the "
            "annotations, the fill (by its confidence) and the 'model' layer "
            "(its bias removed) together"
        )
        self.run_button.setToolTip("Smooth in the background into the 'smoothed' layers")
        self.report: list[str] = []  # what the last run said (bias, flags), shown below
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
        no_fps = not fps and find_cine_layer(self.viewer) is not None
        self.hint.setText(
            "\n".join(
                (["This cine has no frame rate: set the window in frames."] if no_fps else [])
                + self.report
            )
        )

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
    def _on_mode(self, mode: str) -> None:
        self.source.setEnabled(mode != FINAL)  # final tracks read the annotations and the model

    def _layer(self, name: str):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def run(self):
        """Smooth the chosen layer, or make the final tracks, in a worker thread (progress bar,
        Cancel); the result goes to the ``smoothed`` layers."""
        cine = find_cine_layer(self.viewer)
        mode, window = self.mode.currentText(), int(self.frames.value())
        name = self.source.currentText()
        if cine is None or (mode != FINAL and (not name or name not in self.viewer.layers)):
            show_error("Open a cine and choose a points layer to smooth.")
            return None
        n_frames = int(cine_info(cine).get("n_frames") or cine.data.shape[0])
        from ..tracking.smoothing import check_inputs

        try:  # the window and mode, before any work (the points are checked in the worker)
            check_inputs(
                n_frames, np.zeros((n_frames, 1, 2)), window, "fusion" if mode == FINAL else mode
            )
        except DustrackError as exc:
            show_error(str(exc))
            return None
        annotations = _layer_copy(self._layer(ANNOTATIONS))
        if mode == FINAL:
            job = self._final_job(
                annotations, _layer_copy(self._layer(MODEL_POINTS)), n_frames, window
            )
        else:
            source = _layer_copy(self.viewer.layers[name])
            job = self._smooth_job(
                source, name, annotations if mode == "fusion" else None, n_frames, window, mode
            )
        frames = open_frames(cine)

        def work(progress=None, cancel=None):
            try:
                return job(frames, progress, cancel)
            except Cancelled:
                return None  # a cancel is an answer, not an error
            finally:
                _close(frames)

        def done(result):
            if result is None:
                show_info("Smoothing cancelled.")
                return
            out, conf, labels, lines = result
            self.output.begin(labels, n_frames, cine)
            self.output.put(np.arange(len(out)), out, conf)
            self.output.finish()
            what = "final tracks of" if mode == FINAL else "smoothed"
            lines = [f"{what} {len(labels)} label(s) into '{OUT_TRACKS}'"] + lines
            if name == MODEL_POINTS or mode == FINAL:
                lines += self.hide_model()
            self.report = lines
            self._refresh()
            show_info("\n".join(lines))

        return self.taskbar.run(work, on_done=done, label=f"smoothing ({mode})")

    def hide_model(self) -> list[str]:
        """Hide the model's layers, which the result supersedes: two sets of points on each label
        clutter the review, and every shown layer is sliced and drawn at each frame change (on a
        long cine each costs ~10-15 ms of a scrub). A new prediction shows them again."""
        model = page(self.viewer, "model")
        if model is None:
            return []
        model.output.set_shown(False)
        out = model.output
        return [f"'{out.name}' and '{out.tracks_name}' hidden: tick their eye to compare"]

    @staticmethod
    def _smooth_job(source, name, annotations, n_frames, window, mode):
        def job(frames, progress, cancel):
            from ..tracking.smoothing import check_inputs, smooth

            # the same conversion and checks as the command line
            table = points_to_table(*source)
            xy, conf, labels = tracks_array(table, n_frames, name)
            check_inputs(n_frames, xy, window, mode, conf, labels, name)
            # fusion keeps what a person placed or accepted (the annotations) as anchors
            xy, anchors = anchored(xy, labels, _table(annotations, ANNOTATIONS))
            out = smooth(
                frames,
                xy,
                window,
                mode,
                confidence=conf,
                labels=labels,
                progress=progress,
                cancel=cancel,
                anchors=anchors,
            )
            kept = [] if anchors is None else [f"{int(anchors.sum())} annotated point(s) kept"]
            return out, conf, labels, kept

        return job

    @staticmethod
    def _final_job(annotations, model, n_frames, window):
        def job(frames, progress, cancel):
            from ..tracking.final import final_tracks

            kwargs = final_inputs(
                _table(annotations, ANNOTATIONS), _table(model, MODEL_POINTS), n_frames
            )
            final = final_tracks(frames, window=window, progress=progress, cancel=cancel, **kwargs)
            labels = kwargs["labels"]
            lines = [
                f"{int(np.isfinite(kwargs['annotations']).all(axis=2).sum())} annotated "
                "point(s) kept"
            ]
            if final.bias is not None:
                lines += ["model bias removed: " + line for line in final.bias.lines(labels)]
            lines.append(final.flags.line("final tracks"))
            return final.xy, final.confidence, labels, lines

        return job


def _close(frames):
    close = getattr(frames, "close", None)
    if close is not None:
        try:
            close()
        except DustrackError:
            pass
