"""Final tracks and the review order in the dock: the Smooth tab's "final tracks" keep the
annotations and remove the model's bias; frames where the fill was unreliable come first in the
Model tab's review list. Real viewer, real decoding, real Qt events."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_dustrack.io.table import to_array

from .test_annotate import key
from .test_review import (  # noqa: F401 - cine, dock: fixtures (pytest finds them by name)
    LABELS,
    N,
    cine,
    dock,
    feed_predictions,
)

pytestmark = pytest.mark.gui


@pytest.fixture
def filled(dock, qtbot):  # noqa: F811 - the imported fixture
    """The cardiac dock with keyframes from the truth on frames 0, 7, 13, 19, filled, and
    predictions (truth + a bias of (4, -3) px) in the model layer."""
    viewer, tabs, truth = dock
    annotate, model = tabs.pages["Annotate"], tabs.pages["Model"]
    for f in (0, 7, 13, N - 1):
        for j, lab in enumerate(LABELS):
            annotate.session.set_point(f, lab, *truth[f, j])
    annotate.fill_between()
    qtbot.waitUntil(lambda: not annotate.taskbar.busy, timeout=60_000)
    pred, conf = feed_predictions(qtbot, model, truth)
    yield viewer, tabs, truth, pred
    settle(qtbot, annotate)


def settle(qtbot, annotate):
    """Let the pending tracks rebuild (a timer, then a worker thread) finish before teardown."""
    from qtpy.QtCore import QThreadPool

    qtbot.waitUntil(lambda: not annotate._tracks_timer.isActive(), timeout=5000)
    QThreadPool.globalInstance().waitForDone(20_000)
    qtbot.wait(50)  # the worker's result is applied in the event loop


def _run_smooth(qtbot, smooth, mode, frames=6):
    """Choose ``mode``, click Smooth, wait for the drawn result; its point table."""
    from napari_dustrack._widgets._predictions import visible_table
    from napari_dustrack._widgets.smooth import OUT_POINTS

    smooth.mode.setCurrentText(mode)
    smooth.frames.setValue(frames)
    with qtbot.waitSignal(smooth.output.finished, timeout=120_000):
        qtbot.mouseClick(smooth.run_button, Qt.LeftButton)
    return visible_table(smooth.viewer.layers[OUT_POINTS])


def test_final_tracks_keep_the_annotations_and_remove_the_model_bias(filled, qtbot):
    from napari_dustrack._widgets.smooth import FINAL, MODES
    from napari_dustrack.tracking.smoothing import MODES as SMOOTHER_MODES

    viewer, tabs, truth, pred = filled
    annotate, smooth = tabs.pages["Annotate"], tabs.pages["Smooth"]
    assert list(MODES) == list(SMOOTHER_MODES) + [FINAL]
    annotate.session.set_point(4, LABELS[1], *(truth[4, 1] + 0.3))  # a correction by hand
    table = _run_smooth(qtbot, smooth, FINAL)
    assert not smooth.source.isEnabled()  # final tracks read the annotations and the model
    got, _ = to_array(table, LABELS, N)
    manual = annotate.session.table().query("source == 'manual'")
    ann, _ = to_array(manual, LABELS, N)
    anchored = np.isfinite(ann).all(axis=2)
    assert anchored.sum() == 4 * len(LABELS) + 1
    np.testing.assert_array_equal(got[anchored], ann[anchored])  # exactly the annotations
    # the model's (4, -3) px offset was measured and removed: final tracks near the truth
    text = smooth.hint.text()
    assert "model bias removed" in text and "(+4.00, -3.00)" in text, text
    assert "final tracks:" in text and "unreliable point(s)" in text
    err = np.hypot(*(got - truth).transpose(2, 0, 1))
    assert np.sqrt(np.mean(err**2)) < 1.0 < np.sqrt(np.mean(np.sum((pred - truth) ** 2, axis=2)))

    # plain fusion of the model keeps the manual annotations too (anchors)
    smooth.source.setCurrentText("model")
    table = _run_smooth(qtbot, smooth, "fusion")
    got, _ = to_array(table, LABELS, N)
    np.testing.assert_allclose(got[anchored], ann[anchored], atol=0.05)
    assert "annotated point(s) kept" in smooth.hint.text()


def test_review_puts_unreliable_flow_first(filled, qtbot):
    from napari_dustrack import workers

    viewer, tabs, truth, pred = filled
    annotate, model = tabs.pages["Annotate"], tabs.pages["Model"]
    video = viewer.layers[0].metadata["dustrack"]["path"]
    # a mis-placed flow point: its confidence says so (as a fill reports it)
    session = annotate.session
    p = session.point(10, LABELS[2])
    session.apply_flow(np.array([[[p.x + 6, p.y]]]), [LABELS[2]], [10], np.array([[0.1]]))
    annotate.accept_range(0, N - 1)  # accepted: frame 10 is a training frame now
    rows = model.fill_rows()
    assert set(rows["source"]) == {"flow"} and rows["reviewed"].all()
    confidence = rows.set_index(["frame", "label"])["confidence"]
    assert confidence.loc[(10, LABELS[2])] == pytest.approx(0.1)
    table = model.prediction_table()
    curated = sorted(session.table()["frame"].unique())
    ranked = workers.review_task(video, table, 20, curated, flow=rows)
    assert int(ranked["frame"].iloc[0]) == 10
    assert "optical flow unreliable" in ranked["reason"].iloc[0]
    without = workers.review_task(video, table, 20, curated)
    assert 10 not in set(without["frame"])  # curated, and nothing said its flow was wrong
    # the Model tab lists it first and G goes there
    model._reviewed(ranked)
    assert model.review.item(0).text().startswith("frame 10:")
    annotate.go_to(0)
    key(viewer, qtbot, Qt.Key_G)
    assert annotate.frame == 10


def test_a_smoothed_result_hides_the_model_layers_until_the_next_prediction(filled, qtbot):
    viewer, tabs, truth, _ = filled
    smooth, model = tabs.pages["Smooth"], tabs.pages["Model"]
    names = ("model", "model tracks")
    shown = lambda: [viewer.layers[n].visible for n in names]  # noqa: E731
    qtbot.waitUntil(lambda: shown() == [True, True], timeout=5000)
    smooth.source.setCurrentText("model")
    _run_smooth(qtbot, smooth, "fusion")
    assert shown() == [False, False]  # superseded: not drawn, not sliced at each frame
    assert "hidden: tick their eye to compare" in smooth.hint.text()
    feed_predictions(qtbot, model, truth)  # a new prediction shows them again
    qtbot.waitUntil(lambda: shown() == [True, True], timeout=5000)
    _run_smooth(qtbot, smooth, "fusion")
    assert shown() == [False, False]
    # a prediction of other labels refills the model layer: both layers shown again too
    model.output.begin(LABELS[:-1], N, viewer.layers[0])
    qtbot.waitUntil(lambda: shown() == [True, True] and not model.output.busy, timeout=20_000)
