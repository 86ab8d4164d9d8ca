"""The Measure tab in a real napari viewer: define, plot, click to seek, export."""

from __future__ import annotations

import gc
import weakref

import av
import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from matplotlib.colors import to_hex, to_rgb
from qtpy.QtCore import Qt

from napari_dustrack._widgets.measure import MeasureWidget
from napari_dustrack.io.export import label_colour, read_measurements_csv
from napari_dustrack.io.layers import table_to_points, table_to_tracks
from napari_dustrack.io.points_io import read_points
from napari_dustrack.io.sidecar import measures_path, sidecar_dir, write_labels
from napari_dustrack.io.table import from_array
from napari_dustrack.measure import Measure, load_measures

pytestmark = pytest.mark.gui

N = 20
SPACING = (0.2, 0.1)  # (dy, dx) mm
FPS = 10.0


def moving_points(offset=0.0):
    """Three labels: 'a' fixed, 'b' moving right, 'c' below 'a'; 'b' missing on frame 7."""
    f = np.arange(N, dtype=float)
    xy = np.empty((N, 3, 2))
    xy[:, 0] = [10.0, 10.0]
    xy[:, 1] = np.c_[20.0 + f + offset, np.full(N, 10.0)]
    xy[:, 2] = [10.0, 30.0]
    xy[7, 1] = np.nan
    return from_array(xy, ["a", "b", "c"], source="model")


@pytest.fixture
def viewer_with_points(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    frames = np.full((N, 48, 64), 100, np.uint8)
    video = tmp_path / "cine.mp4"
    viewer.add_image(
        frames,
        name="cine",
        scale=(1, *SPACING),
        metadata={
            "dustrack": {
                "path": str(video),
                "fps": FPS,
                "pixel_spacing": SPACING,
                "n_frames": N,
                "kind": "video",
            }
        },
    )
    data, features = table_to_points(moving_points())
    points = viewer.add_points(data, features=features, name="annotations", scale=(1, *SPACING))
    points.metadata["review_frames"] = [3, 12]
    return viewer, video


def test_distance_measure_is_plotted_in_mm_over_seconds(viewer_with_points, qtbot):
    viewer, video = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    assert widget.plot_combo.currentText() == "ab [mm]"
    line = widget.lines[("measure", "annotations", "ab [mm]")]
    t, d = line.get_data()
    np.testing.assert_allclose(t, np.arange(N) / FPS)
    expected = (10.0 + np.arange(N)) * SPACING[1]  # along x: dx
    expected[7] = np.nan
    np.testing.assert_allclose(d, expected)
    # x(t) of 'b' in mm, y(t) of 'c'; the review frames marked on the time axis.
    np.testing.assert_allclose(
        widget.lines[("x", "annotations", "b")].get_ydata()[:3], [2.0, 2.1, 2.2]
    )
    np.testing.assert_allclose(widget.lines[("y", "annotations", "c")].get_ydata(), 30 * SPACING[0])
    np.testing.assert_allclose(widget.lines[("review", "annotations", "")].get_xdata(), [0.3, 1.2])
    # Definitions are saved beside the points in the video's sidecar.
    assert load_measures(measures_path(video)) == [Measure("ab", "distance", ["a", "b"])]
    # A second widget on the same viewer picks them up.
    again = MeasureWidget(viewer)
    qtbot.addWidget(again)
    assert [m.name for m in again.measures] == ["ab"]


def test_form_defines_a_measure_from_checked_labels_in_order(viewer_with_points, qtbot):
    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    labels = [widget.label_list.item(i).text() for i in range(widget.label_list.count())]
    assert labels == ["a", "b", "c"]
    widget.kind_combo.setCurrentText("angle")
    for name in ("b", "a", "c"):  # angle at 'a' between a->b and a->c
        widget.label_list.item(labels.index(name)).setCheckState(Qt.Checked)
    widget.name_edit.setText("corner")
    widget._add_from_form()
    assert widget.measures[-1] == Measure("corner", "angle", ["b", "a", "c"])
    assert widget._checked == [] and widget.name_edit.text() == "angle 1"  # form reset
    np.testing.assert_allclose(widget.results["annotations"]["corner [deg]"].dropna(), 90.0)


def test_frame_marker_follows_napari_and_clicking_the_plot_moves_napari(viewer_with_points, qtbot):
    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    widget.resize(500, 900)
    widget.show()
    widget.canvas.draw()
    viewer.dims.set_current_step(0, 5)
    # the line follows within a few hundred ms (throttled: scrubbing does not redraw per frame)
    qtbot.waitUntil(
        lambda: all(line.get_xdata()[0] == pytest.approx(0.5) for line in widget.frame_lines),
        timeout=2000,
    )
    ax = widget.ax_m
    x, y = ax.transData.transform((1.4, np.nanmean(ax.get_ylim())))
    event = MouseEvent("button_press_event", widget.canvas, x, y, button=1)
    assert event.inaxes is ax
    widget.canvas.callbacks.process("button_press_event", event)
    assert viewer.dims.current_step[0] == 14
    qtbot.waitUntil(
        lambda: widget.frame_lines[0].get_xdata()[0] == pytest.approx(1.4), timeout=2000
    )
    # With the toolbar's zoom on, a click zooms and leaves the frame alone.
    widget.toolbar.zoom()
    x, y = ax.transData.transform((0.2, np.nanmean(ax.get_ylim())))
    widget.canvas.callbacks.process(
        "button_press_event", MouseEvent("button_press_event", widget.canvas, x, y, button=1)
    )
    assert viewer.dims.current_step[0] == 14
    widget.toolbar.zoom()
    widget.canvas.callbacks.process(
        "button_press_event", MouseEvent("button_press_event", widget.canvas, x, y, button=1)
    )
    assert viewer.dims.current_step[0] == 2


def test_layers_are_overlaid_and_missing_labels_are_skipped(viewer_with_points, qtbot):
    viewer, _ = viewer_with_points
    smoothed = moving_points(offset=0.5)
    data, features = table_to_tracks(smoothed[smoothed["label"] != "c"])
    viewer.add_tracks(data, features=features, name="smoothed", scale=(1, *SPACING))
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    item = widget.layer_list.findItems("smoothed", Qt.MatchExactly)[0]
    assert item.checkState() == Qt.Unchecked  # tracks start unticked
    item.setCheckState(Qt.Checked)
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    widget.add_measure(Measure("ac", "distance", ["a", "c"]))
    widget.plot_combo.setCurrentText("ab [mm]")
    manual = widget.lines[("measure", "annotations", "ab [mm]")].get_ydata()
    smooth = widget.lines[("measure", "smoothed", "ab [mm]")].get_ydata()
    assert (
        widget.lines[("measure", "smoothed", "ab [mm]")].get_linestyle()
        != widget.lines[("measure", "annotations", "ab [mm]")].get_linestyle()
    )
    gap = np.arange(N) == 7
    np.testing.assert_allclose((smooth - manual)[~gap], 0.5 * SPACING[1])
    assert np.isnan(smooth[gap]).all()
    assert "ac [mm]" not in widget.results["smoothed"]  # no 'c' in that layer
    # Unchecking a layer removes its lines.
    item.setCheckState(Qt.Unchecked)
    widget.refresh()
    assert ("measure", "smoothed", "ab [mm]") not in widget.lines


def test_export_buttons_write_files_that_read_back(viewer_with_points, qtbot, tmp_path):
    viewer, _ = viewer_with_points
    viewer.layers["cine"].metadata["dustrack"].pop("path")  # draw on the layer's own frames
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    widget.add_measure(Measure("ab", "distance", ["a", "b"], change="relative"))
    widget.export_combo.setCurrentText("annotations")
    table = moving_points()
    cols = ["frame", "label", "x", "y"]
    for method, name in (
        (widget.export_points_csv_to, "p.csv"),
        (widget.export_dlc_to, "CollectedData_x.h5"),
        (widget.export_dustrack_to, "p.json"),
    ):
        back = read_points(method(tmp_path / name))
        assert (
            back[cols]
            .sort_values(cols[:2])
            .reset_index(drop=True)
            .equals(table[cols].sort_values(cols[:2]).reset_index(drop=True))
        )
    result = read_measurements_csv(widget.export_measurements_to(tmp_path / "m.csv"))
    assert list(result.columns) == ["frame", "time [s]", "ab strain [-]"]
    np.testing.assert_allclose(result["ab strain [-]"][:3], [0.0, 0.1, 0.2])
    out = tmp_path / "tracks.mp4"
    worker = widget.export_mp4_to(out)
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.task.busy, timeout=60_000)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) == N
        assert float(stream.average_rate) == pytest.approx(FPS)


def test_editing_a_point_updates_the_plots(viewer_with_points, qtbot):
    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    points = viewer.layers["annotations"]
    row = int(
        np.flatnonzero((points.features["label"] == "b").to_numpy() & (points.data[:, 0] == 2))[0]
    )
    data = points.data.copy()
    data[row, 2] += 10.0  # move 'b' 10 px right on frame 2
    points.data = data
    line = ("measure", "annotations", "ab [mm]")
    qtbot.waitUntil(lambda: widget.lines[line].get_ydata()[2] == pytest.approx(2.2), timeout=5000)


def test_plots_use_the_annotation_label_colours(viewer_with_points, qtbot):
    viewer, video = viewer_with_points
    write_labels(sidecar_dir(video), [{"name": "b", "colour": "#ff0000"}])
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()  # a hidden Measure tab does no work
    assert to_hex(widget.lines[("x", "annotations", "b")].get_color()) == "#ff0000"
    # Labels without a saved colour keep the palette's colour for their position.
    assert to_hex(
        widget.lines[("x", "annotations", "a")].get_color()
    ) == "#{:02x}{:02x}{:02x}".format(*label_colour(0))


def test_measures_follow_the_cine_layers_scale_and_units(make_napari_viewer, qtbot, tmp_path):
    """A cine whose metadata says nothing of mm or fps: the layer's napari scale and units do
    (as the reader sets them, or the user changes them), and the measures follow them."""
    from napari_dustrack._napari.geometry import cine_geometry

    viewer = make_napari_viewer()
    geometry = cine_geometry({"fps": FPS, "pixel_spacing": SPACING, "n_frames": N})
    viewer.add_image(
        np.full((N, 48, 64), 100, np.uint8),
        name="cine",
        **geometry,
        metadata={
            "dustrack": {
                "path": str(tmp_path / "cine.mp4"),
                "fps": None,
                "pixel_spacing": None,
                "n_frames": N,
                "kind": "video",
            }
        },
    )
    data, features = table_to_points(moving_points())
    viewer.add_points(data, features=features, name="annotations", **geometry)
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    qtbot.waitUntil(lambda: ("measure", "annotations", "ab [mm]") in widget.lines, timeout=5000)
    t, d = widget.lines[("measure", "annotations", "ab [mm]")].get_data()
    np.testing.assert_allclose(t, np.arange(N) / FPS)
    expected = (10.0 + np.arange(N)) * SPACING[1]
    expected[7] = np.nan
    np.testing.assert_allclose(d, expected)
    out = read_measurements_csv(widget.export_measurements_to(tmp_path / "m.csv"))
    assert out["ab [mm]"].iloc[0] == pytest.approx(1.0) and "time [s]" in out
    # the user gives the pixel size in cm and the frame time in ms: still mm and seconds
    cine = viewer.layers["cine"]
    cine.units = ("ms", "cm", "cm")
    cine.scale = (1000 / FPS, SPACING[0] / 10, SPACING[1] / 10)
    cal = widget.calibration()
    assert cal.spacing == pytest.approx(SPACING) and cal.fps == pytest.approx(FPS)
    # a cine in plain pixels measures in px, per frame
    cine.units = ("pixel", "pixel", "pixel")
    assert widget.calibration().length_unit == "px" and widget.calibration().fps is None


def nudged(points):
    """The layer's data moved 1 px down and right (frames unchanged, distances too)."""
    data = points.data.copy()
    data[:, 1:] += 1.0
    return data


def draw_counter(widget) -> list:
    """Full matplotlib draws of the widget's canvas (each one emits a draw_event)."""
    draws = []
    widget.canvas.mpl_connect("draw_event", lambda event: draws.append(event))
    return draws


def test_a_hidden_tab_does_no_work_until_shown(viewer_with_points, qtbot):
    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    draws = draw_counter(widget)
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))  # hidden: saved, not computed
    points = viewer.layers["annotations"]
    for step in (3, 9, 15):  # edits and frame changes while hidden
        points.data = nudged(points)
        viewer.dims.set_current_step(0, step)
    qtbot.wait(700)  # longer than the replot and frame-line throttles
    assert widget.redraws == 0 and not draws and widget.results == {}
    widget.show()
    qtbot.waitUntil(lambda: len(draws) == 1, timeout=5000)
    assert widget.redraws == 1
    assert widget.frame_lines[0].get_xdata()[0] == pytest.approx(15 / FPS)
    line = widget.lines[("measure", "annotations", "ab [mm]")]
    np.testing.assert_allclose(line.get_ydata()[2], (10.0 + 2) * SPACING[1])
    # the figure drawn in pieces is on the canvas: pixels of label b's colour
    rgb = np.array(to_rgb(widget.lines[("x", "annotations", "b")].get_color())) * 255
    buffer = np.array(widget.canvas.buffer_rgba())[..., :3].astype(float)
    assert (np.abs(buffer - rgb).sum(axis=-1) < 30).sum() > 50


def test_the_frame_line_moves_without_a_full_redraw(viewer_with_points, qtbot):
    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.resize(500, 900)
    widget.show()
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    draws = draw_counter(widget)
    qtbot.waitUntil(lambda: len(draws) >= 1 and widget._background is not None, timeout=5000)
    qtbot.wait(300)
    n_draws, redraws = len(draws), widget.redraws
    pixels = np.array(widget.canvas.buffer_rgba()).copy()
    t_old = widget.frame_lines[0].get_xdata()[0]
    for step in range(14, 2, -1):  # a scrub: 12 frame changes, to frame 3
        viewer.dims.set_current_step(0, step)
        qtbot.wait(20)
    qtbot.waitUntil(
        lambda: widget.frame_lines[0].get_xdata()[0] == pytest.approx(0.3), timeout=2000
    )
    qtbot.wait(300)
    assert len(draws) == n_draws and widget.redraws == redraws  # no full draw of the figure
    # ... yet the line moved on screen: the canvas buffer changed where the line was and is
    changed = np.any(np.array(widget.canvas.buffer_rgba()) != pixels, axis=(0, 2))
    columns = np.flatnonzero(changed)
    x_new, x_old = sorted(widget.ax_m.transData.transform((t, 0))[0] for t in (0.3, t_old))
    assert columns.size and abs(columns.min() - x_new) <= 2 and abs(columns.max() - x_old) <= 2
    assert columns.size < 12  # two thin vertical strips, not a redrawn figure


def test_an_edit_during_a_scrub_is_computed_and_drawn_once_the_frame_settles(
    viewer_with_points, qtbot
):
    from napari_dustrack._widgets._measure_plot import SETTLE_MS

    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    qtbot.waitUntil(lambda: widget.redraws >= 1 and not widget.drawing, timeout=5000)
    redraws, points = widget.redraws, viewer.layers["annotations"]
    points.data = nudged(points)  # an edit, then 1.2 s of frame changes every 60 ms
    for k in range(20):
        viewer.dims.set_current_step(0, 3 + k % 10)
        qtbot.wait(60)
        assert widget.redraws == redraws  # the user scrubs: napari gets the event loop
    qtbot.waitUntil(lambda: widget.redraws == redraws + 1, timeout=SETTLE_MS + 3000)
    qtbot.waitUntil(lambda: not widget.drawing, timeout=5000)


def test_no_work_or_draw_after_close(viewer_with_points, qtbot, capfd):
    viewer, _ = viewer_with_points
    widget = MeasureWidget(viewer)
    widget.show()
    widget.add_measure(Measure("ab", "distance", ["a", "b"]))
    qtbot.waitUntil(lambda: widget._background is not None, timeout=5000)
    draws = draw_counter(widget)
    points = viewer.layers["annotations"]
    points.data = nudged(points)  # a replot is due in REPLOT_MS...
    viewer.dims.set_current_step(0, 4)  # ... and a frame-line move
    widget.canvas.draw_idle()  # and a queued matplotlib draw
    widget.close()
    widget.deleteLater()
    freed = weakref.ref(widget)
    widget = None
    qtbot.wait(800)
    gc.collect()
    assert freed() is None  # nothing (napari's events, its canvas) keeps a closed tab alive
    points.data = nudged(points)  # napari events after deletion reach nothing
    viewer.dims.set_current_step(0, 9)
    viewer.layers.remove("annotations")
    qtbot.wait(400)
    assert not draws
    err = capfd.readouterr().err
    assert "Traceback" not in err and "has been deleted" not in err


def test_many_points_go_on_the_axes_one_layer_per_turn(make_napari_viewer, qtbot):
    """A long cine's lines are put on the axes over several event-loop turns, then drawn in
    pieces: the same lines in the end, and the loop runs in between."""
    from napari_dustrack._widgets._measure_plot import SPLIT_POINTS

    n = 2000
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((n, 8, 8), np.uint8), name="cine")
    f = np.arange(n, dtype=float)
    xy = np.stack([np.c_[10 + np.sin(f / 50) + j, 20 + j + 0 * f] for j in range(3)], axis=1)
    for k in range(4):
        data, features = table_to_points(from_array(xy + k, ["a", "b", "c"], source="model"))
        viewer.add_points(data, features=features, name=f"layer {k}")
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitUntil(lambda: len(widget.series) == 4 and not widget.drawing, timeout=30_000)
    assert sum(len(s.t) for v in widget.series.values() for s in v.values()) > SPLIT_POINTS
    redraws = widget.redraws
    widget._draw()
    assert widget.drawing and len(widget.lines) < 4 * 6  # not all at once
    qtbot.waitUntil(lambda: not widget.drawing, timeout=10_000)
    assert widget.redraws == redraws + 1 and len(widget.lines) == 4 * 6
    np.testing.assert_allclose(widget.lines[("y", "layer 3", "c")].get_ydata(), 20 + 2 + 3)
