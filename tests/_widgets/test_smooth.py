"""The Smooth tab in a real napari viewer, on a simulated cine decoded from MP4."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dustrack._widgets.smooth import OUT_POINTS, OUT_TRACKS, SmoothWidget
from napari_dustrack.cli import main
from napari_dustrack.io.layers import points_to_table, table_to_points, tracks_to_table
from napari_dustrack.io.points_io import read_points, write_points
from napari_dustrack.io.table import from_array, labels_of, to_array
from napari_dustrack.simulate import simulate, write_simulation

from ._cine_helpers import add_cine

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def cine_case(tmp_path_factory):
    out = tmp_path_factory.mktemp("smooth_widget")
    sim = simulate("muscle", n_frames=30, shape=(96, 96), seed=4)
    video = write_simulation(sim, out)["video"]
    labels = labels_of(sim.truth)
    truth, _ = to_array(sim.truth, labels, len(sim.frames))
    raw = truth + np.random.default_rng(3).normal(0, 1.2, truth.shape)
    return sim, video, raw, truth, labels


@pytest.fixture
def viewer(make_napari_viewer, cine_case):
    sim, video, raw, _, labels = cine_case
    viewer = make_napari_viewer()
    add_cine(viewer, sim, video)
    data, features = table_to_points(from_array(raw, labels, source="model"))
    viewer.add_points(data, features=features, name="predictions")
    return viewer


def test_smooth_tab_adds_tracks_equal_to_the_cli(viewer, cine_case, qtbot, tmp_path):
    sim, video, raw, truth, labels = cine_case
    widget = SmoothWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.source.currentText() == "predictions"
    widget.seconds.setValue(0.1)
    assert widget.frames.value() == round(0.1 * sim.fps)
    widget.mode.setCurrentText("fusion")
    widget.run()
    qtbot.waitUntil(
        lambda: OUT_TRACKS in viewer.layers and not widget.taskbar.busy, timeout=120_000
    )
    tracks = viewer.layers[OUT_TRACKS]
    got = tracks_to_table(tracks.data, track_labels=labels)
    got_xy, _ = to_array(got, labels, len(sim.frames))
    points = viewer.layers[OUT_POINTS]
    assert set(points_to_table(points.data, points.features)["source"]) == {"smoothed"}
    # the command line on the same video and tracks gives the same numbers
    raw_csv, out_csv = tmp_path / "raw.csv", tmp_path / "out.csv"
    write_points(from_array(raw, labels, source="model"), raw_csv)
    assert (
        main(
            [
                "smooth",
                str(video),
                "--tracks",
                str(raw_csv),
                "--window",
                "0.1",
                "--out",
                str(out_csv),
            ]
        )
        == 0
    )
    cli_xy, _ = to_array(read_points(out_csv), labels, len(sim.frames))
    np.testing.assert_allclose(got_xy, cli_xy, atol=1e-6)
    err = lambda a: np.sqrt(np.mean(np.sum((a - truth) ** 2, axis=-1)))  # noqa: E731
    assert err(got_xy) < err(raw)


def test_cancel_leaves_no_result(viewer, qtbot):
    widget = SmoothWidget(viewer)
    qtbot.addWidget(widget)
    widget.mode.setCurrentText("dustrack")
    widget.frames.setValue(60)  # longer than the cine: refused before any work starts
    assert widget.run() is None and not widget.taskbar.busy
    widget.frames.setValue(8)
    worker = widget.run()
    assert worker is not None
    widget.taskbar.cancel()
    qtbot.waitUntil(lambda: not widget.taskbar.busy, timeout=120_000)
    assert OUT_TRACKS not in viewer.layers


def test_python_exits_cleanly_while_a_task_runs(tmp_path):
    """A task still running when Python exits is cancelled and waited for: PyQt deletes the
    worker's signal object at exit, and a worker thread ending after that aborts the process."""
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "exit_while_busy.py"
    script.write_text(
        textwrap.dedent(
            """
            from napari._qt.qt_event_loop import get_qapp
            from napari_dustrack._widgets.common import TaskBar

            get_qapp()
            bar = TaskBar()

            def slow(progress=None, cancel=None):
                cancel.wait(60)  # until cancelled
                return "done"

            bar.run(slow, label="slow")
            print("exiting while the task runs", flush=True)
            """
        )
    )
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exiting while the task runs" in run.stdout
    assert "has been deleted" not in run.stderr
    assert time.monotonic() - t0 < 50  # cancelled, not waited out
