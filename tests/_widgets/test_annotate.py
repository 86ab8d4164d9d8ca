"""The Annotate tab in a real napari viewer, driven like a user: keys, clicks, drags.

The cine is the simulator's (known ground truth), written to MP4 and opened through the
plugin's reader, so decoding, the sidecar and the widget are all real.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication

from napari_dustrack.io.sidecar import points_path, sidecar_dir
from napari_dustrack.io.table import read_points_csv, to_array
from napari_dustrack.session import Point

pytestmark = pytest.mark.gui

N_FRAMES = 30
SHAPE = (96, 96)
KEYFRAMES = (0, 14, 29)


@pytest.fixture(scope="module")
def cine(tmp_path_factory):
    """A simulated muscle cine on disk and its ground truth (first 4 labels).

    The muscle scenario moves non-linearly (a twitch), so linear interpolation between the
    keyframes is off by pixels and only optical flow can follow it.
    """
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate("muscle", n_frames=N_FRAMES, seed=3, shape=SHAPE)
    paths = write_simulation(sim, tmp_path_factory.mktemp("cine"))
    truth = read_points_csv(paths["truth"])
    labels = list(dict.fromkeys(truth["label"]))[:4]
    xy, _ = to_array(truth, labels, N_FRAMES)
    return paths["video"], labels, xy


def open_cine_in(viewer, video):
    layers = viewer.open(str(video), plugin="napari-dustrack")
    return layers[0]


def make_widget(viewer, qtbot):
    from napari_dustrack._widgets.annotate import AnnotateWidget

    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    qtbot.waitUntil(lambda: widget.session is not None, timeout=5000)
    return widget


def canvas_of(viewer):
    return viewer.window._qt_viewer.canvas


def key(viewer, qtbot, k, modifier=Qt.NoModifier):
    """A real key press on napari's canvas (goes through napari's key map)."""
    qtbot.keyClick(canvas_of(viewer).native, k, modifier)


def to_canvas(viewer, layer, x, y) -> QPoint:
    """Canvas pixel of data point (x, y) of ``layer`` (napari's own canvas->world map, inverted)."""
    canvas = canvas_of(viewer)
    view = canvas.view
    sy, sx = layer.scale[-2:]
    ty, tx = layer.translate[-2:]
    pos = (view.transform * view.scene.transform).map([x * sx + tx, y * sy + ty, 0, 1])
    return QPoint(int(round(pos[0])), int(round(pos[1])))


def click(viewer, qtbot, layer, x, y):
    qtbot.mouseClick(canvas_of(viewer).native, Qt.LeftButton, pos=to_canvas(viewer, layer, x, y))


def drag(viewer, qtbot, layer, start, end, steps=6):
    """A real press-move-release on the canvas, paced like a hand (napari throttles moves)."""
    native = canvas_of(viewer).native
    p0, p1 = to_canvas(viewer, layer, *start), to_canvas(viewer, layer, *end)
    qtbot.mousePress(native, Qt.LeftButton, pos=p0)
    for t in np.linspace(0, 1, steps)[1:]:
        p = QPointF(p0.x() + t * (p1.x() - p0.x()), p0.y() + t * (p1.y() - p0.y()))
        # QTest's mouseMove carries no button state: send the event ourselves
        QApplication.sendEvent(
            native, QMouseEvent(QEvent.MouseMove, p, Qt.NoButton, Qt.LeftButton, Qt.NoModifier)
        )
        qtbot.wait(15)
    qtbot.mouseRelease(native, Qt.LeftButton, pos=p1)
    qtbot.wait(15)


def linear_rmse(truth) -> float:
    """RMSE of straight-line interpolation between the keyframes: the floor to beat."""
    frames = np.arange(len(truth))
    lin = np.stack(
        [
            [np.interp(frames, KEYFRAMES, truth[list(KEYFRAMES), j, c]) for c in (0, 1)]
            for j in range(truth.shape[1])
        ]
    ).transpose(2, 0, 1)
    return float(np.sqrt(np.mean(np.sum((lin - truth) ** 2, axis=2))))


def test_annotate_fill_correct_accept_and_restore(make_napari_viewer, qtbot, cine):
    video, labels, truth = cine
    viewer = make_napari_viewer()
    image = open_cine_in(viewer, video)
    widget = make_widget(viewer, qtbot)
    assert widget.cine_layer is image
    assert widget.frame == 0  # the slider is back at the start after our layers were added
    layer = widget.points_layer
    assert tuple(layer.scale) == tuple(image.scale)

    for name in labels:
        widget.add_label(name)
    assert widget.session.labels == labels

    # keyframes: pick each label with its digit key, click it where the truth is
    for frame in KEYFRAMES:
        widget.go_to(frame)
        for j, name in enumerate(labels):
            key(viewer, qtbot, getattr(Qt, f"Key_{j + 1}"))
            assert widget.current_label == name
            x, y = truth[frame, j]
            click(viewer, qtbot, layer, x, y)
            point = widget.session.point(frame, name)
            assert point is not None and point.manual
            assert np.hypot(point.x - x, point.y - y) < 0.5  # a click lands within a screen pixel
    assert widget.session.keyframes() == list(KEYFRAMES)
    # clicking the current label again on the same frame moves it, never adds a second one
    x, y = truth[29, 3]
    click(viewer, qtbot, layer, x + 3, y)
    click(viewer, qtbot, layer, x, y)
    assert (
        sum(
            1
            for f, lab in zip(layer.data[:, 0], layer.features["label"], strict=False)
            if f == 29 and lab == labels[3]
        )
        == 1
    )

    # keyframe navigation keys
    widget.go_to(5)
    key(viewer, qtbot, Qt.Key_Period)
    assert widget.frame == 14
    key(viewer, qtbot, Qt.Key_Comma)
    assert widget.frame == 0
    key(viewer, qtbot, Qt.Key_N)  # frame 1 lacks every label
    assert widget.frame == 1

    # fill between keyframes (F), in the worker thread
    key(viewer, qtbot, Qt.Key_F)
    qtbot.waitUntil(lambda: not widget.taskbar.busy, timeout=60000)
    xy, _ = to_array(widget.session.table(), labels, N_FRAMES)
    assert np.isfinite(xy).all()
    err = np.hypot(*(xy - truth).transpose(2, 0, 1))
    rmse = np.sqrt(np.mean(err**2))
    assert rmse < 1.0 and err.max() < 3.0, err.max(axis=1)
    assert rmse < 0.5 * linear_rmse(truth), (rmse, linear_rmse(truth))  # flow, not interpolation
    flow_rows = widget.session.table().query("source == 'flow'")
    assert len(flow_rows) == 4 * (N_FRAMES - len(KEYFRAMES))
    # flow points look different: hollow (transparent face) until reviewed
    is_flow = (layer.features["source"] == "flow").to_numpy()
    assert np.allclose(layer.face_color[is_flow, 3], 0) and np.all(
        layer.face_color[~is_flow, 3] == 1
    )

    # the trajectories: one track per label, no NaN
    widget.refresh_tracks()
    tracks = widget.tracks_layer
    assert tracks is not None and set(np.unique(tracks.data[:, 0])) == {1, 2, 3, 4}
    assert np.isfinite(tracks.data).all() and len(tracks.data) == 4 * N_FRAMES

    # correct the worst flow point by dragging it onto the truth: it becomes manual
    f, j = np.unravel_index(
        np.argmax(np.where(np.isin(np.arange(N_FRAMES), KEYFRAMES)[:, None], 0, err)), err.shape
    )
    widget.go_to(f)
    widget.pick_label(
        labels[0] if j != 0 else labels[1]
    )  # dragging works whatever label is current
    drag(viewer, qtbot, layer, xy[f, j], truth[f, j])
    moved = widget.session.point(f, labels[j])
    assert moved.manual
    assert np.hypot(moved.x - truth[f, j, 0], moved.y - truth[f, j, 1]) < 0.5

    # accept the whole range as reviewed (R)
    key(viewer, qtbot, Qt.Key_R)
    table = widget.session.table()
    assert table.query("source == 'flow'")["reviewed"].all()
    assert len(table.query("source == 'flow'")) == 4 * (N_FRAMES - len(KEYFRAMES)) - 1
    # undo / redo with the keys
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)
    assert not widget.session.table().query("source == 'flow'")["reviewed"].any()
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert widget.session.table().query("source == 'flow'")["reviewed"].all()
    final = widget.session.table()
    colours = [widget.session.colour(name) for name in labels]

    viewer.close()

    # reopen: everything is back
    viewer = make_napari_viewer()
    open_cine_in(viewer, video)
    widget = make_widget(viewer, qtbot)
    assert widget.session.labels == labels
    assert [widget.session.colour(name) for name in labels] == colours
    restored = widget.session.table()
    assert restored.equals(final)
    assert len(widget.points_layer.data) == len(final)
    assert read_points_csv(points_path(video)).equals(
        final
    )  # the snapshot on disk, not just the journal
    assert (sidecar_dir(video) / "labels.json").is_file()


@pytest.fixture
def own_copy(cine, tmp_path):
    """The cine copied to a fresh folder: a sidecar of its own."""
    import shutil

    video, labels, truth = cine
    copy = tmp_path / "copy.mp4"
    shutil.copy(video, copy)
    return copy, labels, truth


def test_step_and_adjust_carries_points_and_nudges_become_manual(
    make_napari_viewer, qtbot, own_copy
):
    video, labels, truth = own_copy
    viewer = make_napari_viewer()
    image = open_cine_in(viewer, video)
    image.scale = (1.0, 0.25, 0.3)  # anisotropic pixels in mm, as DICOM ultrasound has
    viewer.reset_view()
    widget = make_widget(viewer, qtbot)
    layer = widget.points_layer
    assert tuple(layer.scale) == (1.0, 0.25, 0.3)
    for j, name in enumerate(labels):
        widget.add_label(name)
        widget.place(0, name, *truth[0, j])

    key(viewer, qtbot, Qt.Key_M)
    assert widget.step_adjust and widget.step_check.isChecked()
    for f in range(1, 9):
        key(viewer, qtbot, Qt.Key_Right)
        assert widget.frame == f
        qtbot.waitUntil(lambda: not widget.carrying, timeout=10000)
        here = widget.session.points_at(f)
        assert list(here) == labels and all(p.source == "flow" for p in here.values())
    xy = np.array(
        [
            [widget.session.point(f, lab).x, widget.session.point(f, lab).y]
            for f in range(9)
            for lab in labels
        ]
    ).reshape(9, 4, 2)
    assert np.hypot(*(xy - truth[:9]).transpose(2, 0, 1)).max() < 1.5
    assert widget.last_step_ms is not None

    # nudge one point on frame 8 with the mouse: it becomes manual and the next step starts there
    target = truth[8, 2] + (2.0, -1.5)
    drag(viewer, qtbot, layer, xy[8, 2], target)
    nudged = widget.session.point(8, labels[2])
    assert nudged.manual and np.hypot(nudged.x - target[0], nudged.y - target[1]) < 0.5
    key(viewer, qtbot, Qt.Key_Right)
    qtbot.waitUntil(lambda: not widget.carrying, timeout=10000)
    carried = widget.session.point(9, labels[2])
    assert np.hypot(carried.x - target[0], carried.y - target[1]) < 3  # carried from the nudge
    # a manual point ahead is never overwritten by a carry
    widget.place(10, labels[0], 5.0, 5.0)
    key(viewer, qtbot, Qt.Key_Right)
    qtbot.waitUntil(lambda: not widget.carrying, timeout=10000)
    assert (
        widget.session.point(10, labels[0]).manual and widget.session.point(10, labels[0]).x == 5.0
    )
    assert widget.session.point(10, labels[1]).source == "flow"

    # mode off: stepping no longer carries; stepping back never carries
    key(viewer, qtbot, Qt.Key_M)
    key(viewer, qtbot, Qt.Key_Right)
    assert widget.frame == 11 and not widget.carrying and widget.session.points_at(11) == {}
    # copy the previous frame (C) instead
    key(viewer, qtbot, Qt.Key_C)
    assert set(widget.session.points_at(11)) == set(labels)
    assert all(p.manual for p in widget.session.points_at(11).values())
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)
    assert widget.session.points_at(11) == {}
    # jump to a frame number
    widget.jump_spin.setValue(20)
    widget.jump_spin.editingFinished.emit()
    assert widget.frame == 20


def test_napari_point_tools_keys_labels_import_and_cheat_sheet(
    make_napari_viewer, qtbot, own_copy, interop
):
    from napari_dustrack._widgets.annotate import AnnotateWidget

    video, _, _ = own_copy
    viewer = make_napari_viewer()
    widget = AnnotateWidget(viewer)  # docked before any cine is open
    viewer.window.add_dock_widget(widget, name="Annotate")
    assert widget.session is None
    widget.fill_between()  # nothing to do yet: a notice, no error
    image = open_cine_in(viewer, video)
    qtbot.waitUntil(lambda: widget.session is not None, timeout=5000)
    assert widget.cine_layer is image and widget.frame == 0
    layer = widget.points_layer
    widget.add_label("a")
    widget.add_label("b")
    # digits pick labels instead of napari's mode keys
    key(viewer, qtbot, Qt.Key_2)
    assert widget.current_label == "b" and layer.mode == "pan_zoom"
    assert layer.feature_defaults["label"][0] == "b"

    # napari's own add mode: the new point gets the current label; adding it again moves it
    widget.go_to(3)
    layer.mode = "add"
    layer.add([3, 20.0, 30.0])
    layer.add([3, 22.0, 33.0])
    qtbot.waitUntil(lambda: len(layer.data) == 1, timeout=3000)
    assert widget.session.point(3, "b") == Point(33.0, 22.0)
    assert list(layer.features["label"]) == ["b"]
    # napari's select mode + delete
    layer.mode = "select"
    layer.selected_data = {0}
    layer.remove_selected()
    assert widget.session.point(3, "b") is None
    qtbot.waitUntil(lambda: len(layer.data) == 0, timeout=3000)
    key(
        viewer, qtbot, Qt.Key_Z, Qt.ControlModifier
    )  # napari's undo does not cover points: ours does
    assert widget.session.point(3, "b") is not None and len(layer.data) == 1
    layer.mode = "pan_zoom"
    # X deletes the current label's point here
    key(viewer, qtbot, Qt.Key_X)
    assert widget.session.point(3, "b") is None

    # label list: rename by editing the item, reorder, remove (undoable)
    widget.place(3, "a", 10.0, 10.0)
    item = widget.label_list.item(0)
    item.setText("apex")
    assert widget.session.labels == ["apex", "b"] and widget.session.point(3, "apex") is not None
    assert list(layer.features["label"]) == ["apex"]
    widget.pick_label("b")
    widget.move_label(-1)
    assert widget.session.labels == ["b", "apex"]
    assert [widget.label_list.item(i).text() for i in range(2)] == ["b", "apex"]
    widget.remove_label("apex")
    assert widget.session.labels == ["b"] and len(layer.data) == 0
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)
    assert widget.session.labels == ["b", "apex"] and len(layer.data) == 1

    # import DUSTrack JSON into the annotation layer
    n = widget.import_points(interop / "tiny_cine_annotations_manual.json")
    assert n == 8 and widget.session.labels == ["b", "apex", "0", "1"]
    assert widget.label_list.count() == 4
    assert len(layer.data) == 9 and widget.session.keyframes("1") == [0, 10, 20, 29]
    assert widget.import_points(interop / "missing.json") == 0  # an error notification, no crash

    # the tracks follow the points (one per label with points; no NaN)
    widget.refresh_tracks()
    assert set(np.unique(widget.tracks_layer.data[:, 0])) == {2, 3, 4}
    assert np.isfinite(widget.tracks_layer.data).all()

    # every action has a key, listed on the cheat-sheet (H)
    from napari_dustrack._widgets import _annotate_keys

    key(viewer, qtbot, Qt.Key_H)
    dialog = widget._keys_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.table.rowCount() == len(_annotate_keys.cheat_sheet())
    shown = {dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())}
    assert {
        "Ctrl+Z",
        "Ctrl+Shift+Z / Ctrl+Y",
        "F",
        "T",
        "Shift+T",
        "R",
        "M",
        ",",
        ".",
        "N",
    } <= shown
    for binding in _annotate_keys.BINDINGS:
        assert callable(getattr(widget, binding.action))
    dialog.close()


def test_flow_runs_in_the_background_can_be_cancelled_and_tracks(
    make_napari_viewer, qtbot, own_copy
):
    video, labels, truth = own_copy
    viewer = make_napari_viewer()
    open_cine_in(viewer, video)
    widget = make_widget(viewer, qtbot)
    widget.add_label(labels[0])
    widget.add_label(labels[1])
    widget.place(0, labels[0], *truth[0, 0])
    key(viewer, qtbot, Qt.Key_F)  # a single keyframe: nothing to fill between, no task
    assert not widget.taskbar.busy and len(widget.session) == 1
    widget.place(29, labels[0], *truth[29, 0])

    # Escape right after F: the worker stops at its next frame pair; what it had is kept
    key(viewer, qtbot, Qt.Key_F)
    assert widget.taskbar.busy  # the GUI thread is free while LK runs
    key(viewer, qtbot, Qt.Key_Escape)
    qtbot.waitUntil(lambda: not widget.taskbar.busy, timeout=60000)
    assert len(widget.session.table().query("source == 'flow'")) < 28
    assert all(widget.session.point(f, labels[0]).manual for f in (0, 29))

    # track forward / backward N frames from the current frame (T, Shift+T), current label only (O)
    widget.place(10, labels[1], *truth[10, 1])
    widget.go_to(10)
    widget.n_spin.setValue(5)
    widget.pick_label(labels[1])
    key(viewer, qtbot, Qt.Key_O)
    assert widget.scope_check.isChecked()
    key(viewer, qtbot, Qt.Key_T)
    qtbot.waitUntil(lambda: not widget.taskbar.busy, timeout=60000)
    key(viewer, qtbot, Qt.Key_T, Qt.ShiftModifier)
    qtbot.waitUntil(lambda: not widget.taskbar.busy, timeout=60000)
    tracked = widget.session.table().query(f"label == '{labels[1]}' and source == 'flow'")
    assert sorted(tracked["frame"]) == [5, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    err = [
        np.hypot(r.x - truth[r.frame, 1, 0], r.y - truth[r.frame, 1, 1])
        for r in tracked.itertuples()
    ]
    assert max(err) < 1.5
    assert tracked["confidence"].between(0, 1).all()
    # accept just the segment around frame 12 (Shift+R): between keyframes 10 and the end
    widget.go_to(12)
    key(viewer, qtbot, Qt.Key_R, Qt.ShiftModifier)
    reviewed = widget.session.table().query(f"label == '{labels[1]}' and reviewed")
    assert sorted(reviewed["frame"]) == [11, 12, 13, 14, 15]
