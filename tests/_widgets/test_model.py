"""The Model tab in a real napari viewer: short trainings in a real dask worker process."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from napari_dustrack import workers
from napari_dustrack._widgets.model import OUT_POINTS, OUT_TRACKS, ModelWidget
from napari_dustrack.io.layers import points_to_table, table_to_points
from napari_dustrack.io.table import to_array
from napari_dustrack.simulate import simulate, write_simulation
from napari_dustrack.tracking.heatmap import HeatmapConfig

from ._cine_helpers import add_cine

pytestmark = [pytest.mark.gui, pytest.mark.slow]
LABELS = ["septal", "lateral"]
N = 24
# Steps, not minutes, bound these trainings so that the outcome does not depend on the load.
STEPS = dict(scale=0.5, minutes=10.0, seed=0)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("model_widget")
    sim = simulate("cardiac", n_frames=N, shape=(64, 64), seed=5)
    video = write_simulation(sim, out)["video"]
    truth = sim.truth[sim.truth["label"].isin(LABELS)].reset_index(drop=True)
    yield sim, video, truth
    workers.close_clients()


def make_viewer(make_napari_viewer, sim, video, annotated):
    viewer = make_napari_viewer()
    add_cine(viewer, sim, video)
    data, features = table_to_points(annotated)
    viewer.add_points(data, features=features, name="annotations")
    return viewer


def wait_idle(qtbot, widget, timeout=240_000):
    qtbot.waitUntil(lambda: widget.worker is None and not widget.output.busy, timeout=timeout)


def error(viewer, truth):
    layer = viewer.layers[OUT_POINTS]
    pred, _ = to_array(points_to_table(layer.data, layer.features), LABELS, N)
    g, _ = to_array(truth, LABELS, N)
    return float(np.median(np.linalg.norm(pred - g, axis=-1)))


def test_train_predict_review_correct_retrain(make_napari_viewer, qtbot, case, tmp_path):
    sim, video, truth = case
    annotated = truth[truth["frame"].isin([0, 8, 16])]
    viewer = make_viewer(make_napari_viewer, sim, video, annotated)
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    widget.folder.setText(str(tmp_path / "model"))
    widget.config = HeatmapConfig(max_epochs=15, **STEPS)
    assert not widget.predict_button.isEnabled()

    widget.train_button.click()
    wait_idle(qtbot, widget)
    meta = widget.last_meta
    assert meta is not None and meta["iteration"] == 1 and meta["training_frames"] == [0, 8, 16]
    assert len(widget.plot.points["loss"]) >= 2 and widget.plot.points["val_error_px"]
    assert "model iteration 1 saved" in widget.status.text()
    assert widget.predict_button.isEnabled() and widget.retrain_button.isEnabled()

    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.review.count() > 0, timeout=240_000)
    wait_idle(qtbot, widget)
    points = viewer.layers[OUT_POINTS]
    table = points_to_table(points.data, points.features)
    assert len(table) == N * len(LABELS) and set(table["source"]) == {"model"}
    assert table["confidence"].between(0, 1).all()
    assert viewer.layers[OUT_TRACKS].data.shape == (N * len(LABELS), 4)
    assert widget.updates >= 1
    suggested = widget.review_table["frame"].tolist()
    assert not set(suggested) & {0, 8, 16}  # curated frames are not suggested
    before = error(viewer, truth)

    # Click a suggestion: the viewer goes there.
    item = widget.review.item(1)
    widget.review.itemClicked.emit(item)
    assert viewer.dims.current_step[0] == suggested[1]

    # Correct three suggested frames (they become manual) and retrain: iteration 2.
    fixed = truth[truth["frame"].isin(suggested[:3])]
    layer = viewer.layers["annotations"]
    data, features = table_to_points(pd.concat([annotated, fixed]))
    layer.data, layer.features = data, features
    widget.config = HeatmapConfig(max_epochs=30, **STEPS)
    widget.retrain_button.click()
    wait_idle(qtbot, widget)
    assert widget.last_meta["iteration"] == 2
    assert set(suggested[:3]) <= set(widget.last_meta["training_frames"])
    widget.review.clear()
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.review.count() > 0, timeout=240_000)
    wait_idle(qtbot, widget)
    assert error(viewer, truth) < before


def test_cancel_stops_training_and_keeps_best(make_napari_viewer, qtbot, case, tmp_path):
    sim, video, truth = case
    viewer = make_viewer(make_napari_viewer, sim, video, truth[truth["frame"] % 4 == 0])
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    widget.folder.setText(str(tmp_path / "model"))
    widget.config = HeatmapConfig(scale=0.5)
    widget.minutes.setValue(30)
    widget.train_button.click()
    qtbot.waitUntil(lambda: len(widget.plot.points["loss"]) >= 1, timeout=240_000)
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()
    t0 = time.monotonic()
    wait_idle(qtbot, widget, timeout=60_000)
    assert time.monotonic() - t0 < 15
    meta = json.loads((tmp_path / "model" / "model.json").read_text())
    assert meta["metrics"]["cancelled"] is True
    assert "cancelled" in widget.status.text()


def test_bad_input_is_reported_not_started(make_napari_viewer, qtbot, case, tmp_path):
    sim, video, truth = case
    viewer = make_viewer(make_napari_viewer, sim, video, truth[truth["frame"] == 3])
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    widget.folder.setText(str(tmp_path / "model"))
    assert widget.train() is None and widget.worker is None
    assert not (tmp_path / "model").exists()
    assert widget.predict() is None


def test_run_on_an_existing_scheduler(make_napari_viewer, qtbot, case, tmp_path):
    from distributed import LocalCluster

    from napari_dustrack import settings

    sim, video, truth = case
    viewer = make_viewer(make_napari_viewer, sim, video, truth[truth["frame"].isin([0, 8, 16])])
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    widget.folder.setText(str(tmp_path / "model"))
    widget.config = HeatmapConfig(max_epochs=2, **STEPS)
    widget.run_on.setText("not an address")
    widget._store_run_on()
    assert settings.scheduler_address() is None
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        widget.run_on.setText(cluster.scheduler_address.replace("tcp://", ""))
        widget._store_run_on()
        assert widget.run_on.text() == cluster.scheduler_address
        try:
            widget.train_button.click()
            wait_idle(qtbot, widget)
            assert widget.last_meta is not None and widget.last_meta["iteration"] == 1
            assert cluster.scheduler_address in workers.cluster._clients
        finally:
            settings.set_scheduler_address("")
            workers.close_clients()


def test_a_new_prediction_layer_is_drawn_a_turn_after_it_is_added(make_napari_viewer, qtbot, case):
    """napari builds a new layer's visual and controls when it is inserted and vispy compiles
    its shaders on its first draw: in one event-loop turn a 0.3-0.4 s stall. The ``model``
    layer and its tracks are inserted hidden, still hidden when the event loop next runs, then
    shown: under the annotations (still the active layer), with their label text."""
    from qtpy.QtCore import QTimer

    sim, video, truth = case
    viewer = make_viewer(make_napari_viewer, sim, video, truth[truth["frame"] == 0])
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    visible = {}  # layer name -> [visible when inserted, visible in the next event-loop turn]

    def inserted(event):
        layer = event.value
        visible[layer.name] = [layer.visible]
        QTimer.singleShot(0, lambda: visible[layer.name].append(layer.visible))

    viewer.layers.events.inserted.connect(inserted)
    xy, _ = to_array(truth, LABELS, N)
    widget.output.begin(LABELS, N, viewer.layers["cine"])
    for start in range(0, N, 8):  # as a dask worker's messages arrive
        frames = np.arange(start, start + 8)
        msg = {"frames": frames.tolist(), "xy": xy[frames].tolist()}
        widget._on_message({"kind": "result", "confidence": np.ones((8, 2)).tolist(), **msg})
    widget.output.finish()
    qtbot.waitUntil(
        lambda: (
            not widget.output.busy
            and OUT_TRACKS in viewer.layers
            and all(viewer.layers[name].visible for name in (OUT_POINTS, OUT_TRACKS))
        ),
        timeout=60_000,
    )
    assert visible[OUT_POINTS] == [False, False] and visible[OUT_TRACKS] == [False, False]
    names = [layer.name for layer in viewer.layers]
    assert names[-3:] == [OUT_POINTS, OUT_TRACKS, "annotations"]
    assert viewer.layers.selection.active is viewer.layers["annotations"]
    points = viewer.layers[OUT_POINTS]
    assert points.text.visible and list(points.text.values[: len(LABELS)]) == LABELS
    np.testing.assert_allclose(points.data[:, 1:][:: len(LABELS)], xy[:, 0, ::-1])


def test_a_prediction_of_other_labels_refills_the_layer_in_place(make_napari_viewer, qtbot, case):
    """Predictions of other labels take over the ``model`` layer: removing a layer costs napari
    a full garbage collection (0.3-0.6 s in one turn), so the layer is refilled hidden, then
    shown again with the new labels' rows, text and colours."""
    sim, video, truth = case
    viewer = make_viewer(make_napari_viewer, sim, video, truth[truth["frame"] == 0])
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    xy, _ = to_array(truth, LABELS, N)
    removed, hidden = [], []
    for labels in (LABELS, LABELS[:1]):
        widget.output.begin(labels, N, viewer.layers["cine"])
        widget.output.put(np.arange(N), xy[:, : len(labels)], np.ones((N, len(labels))))
        widget.output.finish()
        wait_idle(qtbot, widget, timeout=60_000)
        qtbot.waitUntil(lambda: viewer.layers[OUT_POINTS].visible, timeout=5_000)
        if labels == LABELS:
            layer = viewer.layers[OUT_POINTS]
            viewer.layers.events.removed.connect(lambda event: removed.append(event.value))
            layer.events.visible.connect(lambda event, lay=layer: hidden.append(not lay.visible))
    assert viewer.layers[OUT_POINTS] is layer and removed == [] and hidden == [True, False]
    assert len(layer.data) == N and set(layer.features["label"]) == {LABELS[0]}
    assert layer.metadata["dustrack"]["labels"] == LABELS[:1]
    assert set(layer.text.values) == {LABELS[0]} and layer.shown.all()
    np.testing.assert_allclose(layer.data[:, 1:], xy[:, 0, ::-1])
    table = points_to_table(layer.data, layer.features)
    assert set(table["source"]) == {"model"} and len(table) == N


def test_a_prediction_begun_before_the_last_layer_is_in_supersedes_it(
    make_napari_viewer, qtbot, case
):
    """Predict twice in quick succession: the first layer, still being built in its worker
    thread, is dropped; one ``model`` layer, of the second prediction's labels."""
    sim, video, truth = case
    viewer = make_viewer(make_napari_viewer, sim, video, truth[truth["frame"] == 0])
    widget = ModelWidget(viewer)
    qtbot.addWidget(widget)
    xy, _ = to_array(truth, LABELS, N)
    widget.output.begin(LABELS, N, viewer.layers["cine"])
    widget.output.begin(LABELS[:1], N, viewer.layers["cine"])  # the first is not in yet
    widget.output.put(np.arange(N), xy[:, :1], np.ones((N, 1)))
    widget.output.finish()
    wait_idle(qtbot, widget, timeout=60_000)
    qtbot.wait(300)  # the first build's result has come back too
    names = [layer.name for layer in viewer.layers]
    assert names.count(OUT_POINTS) == 1 and not any(n.startswith(f"{OUT_POINTS} [") for n in names)
    layer = viewer.layers[OUT_POINTS]
    assert layer is widget.output.layer and layer.metadata["dustrack"]["labels"] == LABELS[:1]
    assert layer.shown.all() and len(layer.data) == N
