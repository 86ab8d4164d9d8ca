"""Reviewing predictions in the dock without training: the model layer is filled through the same
message path a dask worker uses, then corrected with real drags and keys on the canvas."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QListWidget

from napari_dustrack.io.table import read_points_csv, to_array

from .test_annotate import drag, key, open_cine_in

pytestmark = pytest.mark.gui
N = 20
LABELS = ["septal", "lateral", "anterior_endo"]


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate("cardiac", n_frames=N, shape=(64, 64), seed=2)
    paths = write_simulation(sim, tmp_path_factory.mktemp("review"))
    truth, _ = to_array(read_points_csv(paths["truth"]), LABELS, N)
    return paths["video"], truth


@pytest.fixture
def dock(make_napari_viewer, qtbot, cine, tmp_path):
    import shutil

    from napari_dustrack._widgets.main import DustrackWidget

    video, truth = cine
    video = shutil.copy(video, tmp_path / video.name)  # a fresh sidecar for each test
    viewer = make_napari_viewer()
    open_cine_in(viewer, video)
    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    annotate = dock.pages["Annotate"]
    qtbot.waitUntil(lambda: annotate.session is not None, timeout=5000)
    for name in LABELS:
        annotate.add_label(name)
    return viewer, dock, truth


def feed_predictions(qtbot, model, truth, offset=(4.0, -3.0)):
    """Predictions (truth + an offset) arriving as a worker's ``result`` messages, in batches."""
    cine = model.viewer.layers[0]
    model.output.begin(LABELS, N, cine)
    pred = truth + np.asarray(offset)
    conf = np.linspace(0.5, 1.0, N)[:, None].repeat(len(LABELS), axis=1)
    for start in range(0, N, 8):
        frames = np.arange(start, min(start + 8, N))
        model._on_message(
            {
                "kind": "result",
                "frames": frames.tolist(),
                "xy": pred[frames].tolist(),
                "confidence": conf[frames].tolist(),
            }
        )
    model.output.finish()
    qtbot.waitUntil(
        lambda: not model.output.busy and "model tracks" in model.viewer.layers, timeout=20_000
    )
    return pred, conf


def test_predictions_written_off_screen_match_and_show_when_the_frame_changes(dock, qtbot):
    """Pieces of predictions for frames not on screen are written without a redraw; the layer
    ends with exactly the predicted rows, each frame shows its own, and accepting them all is
    one undo step."""
    viewer, dock, truth = dock
    annotate, model = dock.pages["Annotate"], dock.pages["Model"]
    annotate.go_to(3)
    qtbot.wait(50)
    pred, conf = feed_predictions(qtbot, model, truth)
    layer = viewer.layers["model"]
    assert model.output.pieces == 3 and model.output.redraws == 1  # only frames 0-7 on screen
    n = len(LABELS)
    assert np.array_equal(layer.data[:, 0], np.repeat(np.arange(N), n))
    assert np.allclose(layer.data[:, 1:], pred.reshape(-1, 2)[:, ::-1])
    assert np.allclose(layer.features["confidence"], conf.ravel())
    assert list(layer.features["label"]) == LABELS * N and layer.shown.all()
    for frame in (3, 12, 19):  # 12 and 19 were written while frame 3 was shown
        annotate.go_to(frame)
        qtbot.wait(20)
        assert np.allclose(layer._view_data, pred[frame][:, ::-1])
    before = annotate.session.table()
    assert model._accept(0, N - 1, 0.0) == N * n
    assert len(annotate.session) == len(before) + N * n
    annotate.undo()
    assert annotate.session.table().equals(before)


def test_drag_a_prediction_accept_frames_and_undo(dock, qtbot):
    viewer, dock, truth = dock
    annotate, model = dock.pages["Annotate"], dock.pages["Model"]
    session, layer = annotate.session, annotate.points_layer
    pred, conf = feed_predictions(qtbot, model, truth)
    mlayer = viewer.layers["model"]
    assert model.output.pieces >= 2  # written in pieces, in place
    assert mlayer.shown.all() and len(mlayer.data) == N * len(LABELS)
    assert viewer.layers.selection.active is layer  # keys and clicks still act on the annotations
    # one colour per label: model points, model tracks and the annotations agree
    colours = {lab.name: lab.colour for lab in session.label_items}
    from napari_dustrack.io.colours import hex_rgba

    for lab in LABELS:
        rows = (mlayer.features["label"] == lab).to_numpy()
        assert np.allclose(mlayer.border_color[rows][:, :3], hex_rgba(colours[lab])[:3])
    tracks = viewer.layers["model tracks"]
    for lab in LABELS:
        rows = np.asarray(tracks.features["label"]) == lab
        assert np.allclose(tracks.track_colors[rows][:, :3], hex_rgba(colours[lab])[:3], atol=1e-6)

    # drag the model's point of label 0 on frame 7 onto the truth: a manual annotation
    annotate.go_to(7)
    qtbot.wait(50)
    drag(viewer, qtbot, layer, tuple(pred[7, 0]), tuple(truth[7, 0]))
    p = session.point(7, LABELS[0])
    assert p is not None and p.manual and np.hypot(p.x - truth[7, 0, 0], p.y - truth[7, 0, 1]) < 0.7
    assert session.undo_action == f"correct {LABELS[0]}"
    row = int(
        np.flatnonzero(
            (mlayer.data[:, 0] == 7) & (mlayer.features["label"] == LABELS[0]).to_numpy()
        )[0]
    )
    np.testing.assert_allclose(mlayer.data[row, 1:], pred[7, 0, ::-1])  # the prediction stays

    # A accepts the model's points of this frame (the correction is kept), Ctrl+Z undoes it
    key(viewer, qtbot, Qt.Key_A)
    assert session.point(7, LABELS[1]).reviewed and session.point(7, LABELS[1]).source == "model"
    assert session.point(7, LABELS[0]) == p
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)
    assert session.point(7, LABELS[1]) is None
    # accept every frame with confidence >= 0.9, then a range; an empty range says so
    model.min_conf.setValue(0.9)
    qtbot.mouseClick(_button(model, "Accept confident"), Qt.LeftButton)
    accepted = {f for (f, _lab) in session.table()[["frame", "label"]].itertuples(index=False)} - {
        7
    }
    assert accepted == set(np.flatnonzero(conf[:, 0] >= 0.9))
    model.from_spin.setValue(0)
    model.to_spin.setValue(3)
    qtbot.mouseClick(_button(model, "Accept range"), Qt.LeftButton)
    assert all(session.point(f, lab).reviewed for f in range(4) for lab in LABELS)
    # the annotation tracks' tails take each label's colour (napari does not rescale track ids)
    qtbot.waitUntil(
        lambda: (
            annotate.tracks_layer is not None and len(annotate.tracks_layer.data) == len(session)
        ),
        timeout=10_000,
    )
    tails = annotate.tracks_layer
    for lab in LABELS:
        rows = np.asarray(tails.features["label"]) == lab
        assert np.allclose(tails.track_colors[rows][:, :3], hex_rgba(colours[lab])[:3], atol=1e-6)

    # G walks the ranked list; a drag where there is no point pans and adds nothing
    mlayer.metadata["review_frames"] = [12, 3, 15]
    annotate.go_to(0)
    for expected in (12, 3, 15, 12):
        key(viewer, qtbot, Qt.Key_G)
        assert annotate.frame == expected
    n = len(session)
    drag(viewer, qtbot, layer, (2.0, 2.0), (10.0, 10.0))
    assert len(session) == n


def test_bad_input_says_so_and_keeps_everything(dock, qtbot, monkeypatch):
    from napari_dustrack._widgets import model as model_module

    viewer, dock, truth = dock
    annotate, model = dock.pages["Annotate"], dock.pages["Model"]
    messages = []
    monkeypatch.setattr("napari_dustrack._widgets.common.show_error", messages.append)
    assert annotate.accept_predictions(0, 5) == 0  # nothing predicted yet
    assert "press Predict" in messages[-1]
    feed_predictions(qtbot, model, truth)
    annotate.session.set_point(2, LABELS[0], 5.0, 5.0)
    before = annotate.session.table()
    model.from_spin.setValue(25)  # past the cine: clamped to its last frame, which has points
    assert model.from_spin.value() == N - 1
    assert annotate.accept_predictions(30, 40) == 0
    assert "no predicted points on frames 30-40" in messages[-1]
    annotate.remove_label(LABELS[2])  # the model now has a label the annotations lack
    assert annotate.accept_predictions(0, 5) == 0
    assert "anterior_endo" in messages[-1] and "add or rename labels" in messages[-1]
    annotate.undo()
    assert annotate.session.table().equals(before)
    # Retrain without a model, and the missing-extra message (looked up, never imported)
    model.folder.setText(str(viewer.layers[0].metadata["dustrack"]["path"]) + ".nomodel")
    model._on_folder()
    assert not model.retrain_button.isEnabled()
    assert model.train(retrain=True) is None and "no model to retrain yet" in messages[-1]
    monkeypatch.setattr(model_module.importlib.util, "find_spec", lambda name: None)
    assert model.predict() is None
    assert 'pip install "napari-dustrack[model]"' in messages[-1] and "torch" in messages[-1]


def test_lost_points_are_announced_with_a_way_there(dock, qtbot, monkeypatch):
    from napari_dustrack._widgets import _annotate_flow as annotate_module

    viewer, dock, _ = dock
    annotate = dock.pages["Annotate"]
    sent = []
    monkeypatch.setattr(
        annotate_module, "notify", lambda message, actions=(): sent.append((message, actions))
    )
    annotate._report_flow({"septal": [12, 13, 14, 15, 16, 19], "lateral": [4]})
    message, actions = sent[-1]
    assert "septal on 6 frame(s) (12, 13, 14, 15, ... 19)" in message and "lateral on 1" in message
    actions[0][1]()  # the notification's button
    assert annotate.frame == 4
    for expected in (12, 13):
        key(viewer, qtbot, Qt.Key_K)
        assert annotate.frame == expected


def test_dock_fits_a_laptop_and_every_control_explains_itself(dock):
    viewer, dock, _ = dock
    for title, page in dock.pages.items():
        assert page.maximumWidth() <= 420, title
        assert page.minimumSizeHint().width() <= 420, title
        missing = [
            type(w).__name__ + ":" + (getattr(w, "text", lambda: "")() or w.objectName())
            for cls in (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QListWidget)
            for w in page.findChildren(cls)
            if not w.toolTip() and w.isVisibleTo(page) and not _in_toolbar(w)
        ]
        assert not missing, (title, missing)
    assert dock.minimumSizeHint().height() <= 700


def _in_toolbar(widget) -> bool:
    from qtpy.QtWidgets import QToolBar

    parent = widget.parent()
    while parent is not None:
        if isinstance(parent, (QToolBar, QAbstractSpinBox)):
            return True
        parent = parent.parent()
    return type(widget).__name__ in ("QCheckBox",) and bool(widget.parent().toolTip())


def _button(page, text):
    from qtpy.QtWidgets import QPushButton

    return next(b for b in page.findChildren(QPushButton) if b.text() == text)


def test_worker_start_up_can_be_cancelled_and_times_out():
    """Waiting for worker processes (here: a scheduler that never answers) ends on Cancel at
    once, and after the timeout with a message naming the usual cause."""
    import socket
    import time

    from napari_dustrack import workers
    from napari_dustrack.errors import Cancelled, DustrackError

    silent = socket.socket()  # accepts connections, never speaks: the handshake just hangs
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    nowhere = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        workers.get_client(nowhere, cancel=lambda: time.monotonic() - t0 > 0.3)
    assert time.monotonic() - t0 < 2
    with pytest.raises(DustrackError, match="did not start within 1 s.*__main__"):
        workers.get_client(nowhere, timeout=1.0)
    assert nowhere not in workers.cluster._clients
    silent.close()
