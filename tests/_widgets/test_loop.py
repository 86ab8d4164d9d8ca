"""The whole DUSTrack loop in the dock, driven as a user does, with real Qt events.

Open a simulated cine through the reader, dock the DUSTrack widget, name 3 labels, click
keyframes, fill, accept, train (short), predict, jump to the worst frame, correct a prediction
by dragging it, accept a range of predictions, retrain: the corrected points are manual, the
accepted ones reviewed, and the next training uses them. Real dask worker processes, real torch.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_dustrack import workers
from napari_dustrack.io.table import read_points_csv, to_array
from napari_dustrack.tracking.flow_confidence import FLAG_BELOW
from napari_dustrack.tracking.heatmap import HeatmapConfig

from .test_annotate import click, drag, key, open_cine_in

pytestmark = [pytest.mark.gui, pytest.mark.slow]
N = 30
LABELS = ["septal", "lateral", "anterior_endo"]
KEYS = (0, 10, 20)
SHORT = dict(scale=0.5, minutes=10.0, seed=0)  # steps, not minutes, bound these trainings


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate("cardiac", n_frames=N, shape=(64, 64), seed=5)
    paths = write_simulation(sim, tmp_path_factory.mktemp("loop"))
    truth, _ = to_array(read_points_csv(paths["truth"]), LABELS, N)
    yield paths["video"], truth
    workers.close_clients()


def press(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.LeftButton)


def test_predict_review_correct_accept_retrain(make_napari_viewer, qtbot, cine, tmp_path):
    from napari_dustrack._widgets.main import DustrackWidget

    video, truth = cine
    viewer = make_napari_viewer()
    open_cine_in(viewer, video)
    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    annotate, model = dock.pages["Annotate"], dock.pages["Model"]
    qtbot.waitUntil(lambda: annotate.session is not None, timeout=5000)
    session, layer = annotate.session, annotate.points_layer
    for name in LABELS:
        annotate.add_label(name)

    # keyframes: digit key picks the label, a click places it
    for frame in KEYS:
        annotate.go_to(frame)
        for j in range(len(LABELS)):
            key(viewer, qtbot, getattr(Qt, f"Key_{j + 1}"))
            click(viewer, qtbot, layer, *truth[frame, j])
    assert session.keyframes() == list(KEYS)
    key(viewer, qtbot, Qt.Key_F)  # fill between keyframes
    qtbot.waitUntil(lambda: not annotate.taskbar.busy, timeout=60_000)
    annotate.from_spin.setValue(0)
    annotate.to_spin.setValue(KEYS[-1])
    key(viewer, qtbot, Qt.Key_R)  # accept the filled range as reviewed
    assert all(session.point(f, lab).protected for f in range(KEYS[-1] + 1) for lab in LABELS)

    # train from scratch, predict, rank
    model.folder.setText(str(tmp_path / "model"))
    model._on_folder()
    model.config = HeatmapConfig(max_epochs=12, **SHORT)
    press(qtbot, model.train_button)
    qtbot.waitUntil(lambda: model.worker is None, timeout=300_000)
    assert model.last_meta["iteration"] == 1
    assert model.last_meta["training_frames"] == list(range(KEYS[-1] + 1))
    press(qtbot, model.predict_button)
    qtbot.waitUntil(lambda: model.worker is None and model.review.count() > 0, timeout=300_000)
    assert viewer.layers.selection.active is layer  # keys and clicks still act on the annotations
    ranked = model.review_frames()
    # curated frames are left out, except where the fill was unreliable: those come first
    unsure = {
        f
        for (f, _), p in session.snapshot()[0].items()
        if p.source == "flow" and p.confidence < FLAG_BELOW
    }
    first = set(ranked) & unsure
    assert ranked and set(ranked) & set(range(KEYS[-1] + 1)) <= unsure
    assert set(ranked[: len(first)]) == first

    # G goes to the worst frame, then down the list: past the unreliable fill, the model's worst
    for _ in range(len(first) + 1):
        key(viewer, qtbot, Qt.Key_G)
    assert annotate.frame == ranked[len(first)]
    qtbot.wait(100)  # napari slices the layers for the new frame
    frame = annotate.frame
    predicted = model.prediction_table()
    here = predicted[predicted["frame"] == frame].set_index("label")
    xy = here.loc[LABELS, ["x", "y"]].to_numpy()
    gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(LABELS)) * 1e9
    j = int(gaps.min(axis=1).argmax())  # the label whose point no other one overlaps
    label = LABELS[j]
    assert session.points_at(frame) == {}  # past the last keyframe: no annotation yet

    # drag the model's point onto the truth: a manual annotation there; the prediction stays
    # (the model may already be within a pixel of the truth: the user moves it 3 px anyway)
    target = truth[frame, j] if np.hypot(*(xy[j] - truth[frame, j])) > 2 else xy[j] + (3.0, -2.0)
    annotate.pick_label(LABELS[(j + 1) % 3])
    drag(viewer, qtbot, layer, tuple(xy[j]), tuple(target))
    corrected = session.point(frame, label)
    assert corrected is not None and corrected.manual, (session.points_at(frame), xy, j)
    assert np.hypot(corrected.x - target[0], corrected.y - target[1]) < 0.7
    assert session.undo_action == f"correct {label}"
    after = model.prediction_table()
    assert after[(after["frame"] == frame) & (after["label"] == label)].iloc[0]["x"] == xy[j, 0]

    # accept the rest of the predictions as reviewed; the correction is kept; undo/redo cover it
    model.from_spin.setValue(KEYS[-1] + 1)
    model.to_spin.setValue(N - 1)
    n_before = len(session)
    model.accept_range()
    accepted = [(f, lab) for f in range(KEYS[-1] + 1, N) for lab in LABELS]
    assert all(session.point(*k).reviewed or session.point(*k).manual for k in accepted)
    assert session.point(frame, label) == corrected
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)
    assert len(session) == n_before
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert session.point(N - 1, LABELS[2]).source == "model"

    # retrain: continues from iteration 1 on the corrected and accepted frames
    model.config = HeatmapConfig(max_epochs=4, **SHORT)
    press(qtbot, model.retrain_button)
    qtbot.waitUntil(lambda: model.worker is None, timeout=300_000)
    assert model.last_meta["iteration"] == 2
    assert set(model.last_meta["training_frames"]) == set(range(N))
    # a second retrain without new labels is refused with a message, nothing started
    assert model.train(retrain=True) is None and model.worker is None
    assert "no new or corrected labels" in model.status.text()

    # reopening shows the saved model: iteration, training time, loss history
    from napari_dustrack._widgets.model import ModelWidget

    fresh = ModelWidget(viewer)
    fresh.folder.setText(str(tmp_path / "model"))
    fresh._on_folder()
    assert "model iteration 2 saved" in fresh.status.text() and " min" in fresh.status.text()
    assert fresh.plot.points["val_error_px"] and fresh.retrain_button.isEnabled()
