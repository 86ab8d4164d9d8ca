"""Windowed Tracks layers (issue 11): a long table is shown through a window of frames around the
current frame, while saving and measuring read all rows. A real napari viewer under Xvfb."""

from __future__ import annotations

import napari
import numpy as np
import pandas as pd
import pytest
from napari.layers import Image, Tracks

from napari_dustrack._widgets import _track_window
from napari_dustrack._widgets._measure_data import layer_table
from napari_dustrack._widgets.common import label_colormap, show_tracks
from napari_dustrack.io.colours import hex_rgba, track_colour_values
from napari_dustrack.io.layers import full_tracks
from napari_dustrack.io.points_io import read_points

COLOURS = ["#ff0000", "#00ff00", "#0000ff", "#ffff00", "#ff00ff", "#00ffff", "#ff8000", "#8000ff"]


def table(n_labels: int, n_frames: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Rows (track, frame, y, x) sorted as napari keeps them, with label/confidence/colour."""
    track = np.repeat(np.arange(1, n_labels + 1, dtype=float), n_frames)
    frame = np.tile(np.arange(n_frames, dtype=float), n_labels)
    data = np.c_[track, frame, 5 + track, 5 + (frame % 7)]
    labels = np.array([f"p{int(t)}" for t in track], dtype=object)
    features = pd.DataFrame(
        {
            "label": labels,
            "confidence": np.full(len(data), 0.9),
            "colour": track_colour_values(track, n_labels),
        }
    )
    return data, features


def show(viewer, data, features, n_labels, layer=None):
    colormap = label_colormap(COLOURS[:n_labels], "test-labels")

    def new(rows, row_features):
        return Tracks(
            rows,
            features=row_features,
            name="smoothed",
            tail_length=30,
            head_length=0,
            colormaps_dict={"colour": colormap},
            color_by="colour",
        )

    return show_tracks(viewer, layer, data, features, colormap, new)


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_layer(Image(np.zeros((3000, 16, 16), np.uint8), name="cine"))
    return viewer


def assert_colours_per_label(layer, n_labels):
    colours = np.asarray(layer.track_colors)[:, :3]
    for track in range(1, n_labels + 1):
        rows = layer.data[:, 0] == track
        assert rows.any()
        expected = np.broadcast_to(hex_rgba(COLOURS[track - 1])[:3], colours[rows].shape)
        np.testing.assert_allclose(colours[rows], expected, atol=1e-6)
    assert set(layer.features["label"]) == {f"p{t}" for t in range(1, n_labels + 1)}
    np.testing.assert_array_equal(layer.features["label"], [f"p{int(t)}" for t in layer.data[:, 0]])


def test_long_table_shows_a_window_that_follows_the_frame(viewer, qtbot, tmp_path):
    data, features = table(8, 3000)  # 24,000 rows: over the threshold
    assert len(data) > _track_window.THRESHOLD
    viewer.dims.set_current_step(0, 100)
    layer = show(viewer, data, features, 8)
    frames = layer.data[:, 1]
    inner = frames[(frames > 0) & (frames < 2999)]  # less the two rows that keep the extent
    assert len(layer.data) < len(data) // 5
    assert inner.min() <= 100 - 30 and inner.max() >= 100 and inner.max() < 400
    assert viewer.dims.range[0].stop >= 2999  # the slider still spans the whole cine
    assert_colours_per_label(layer, 8)

    window = _track_window.window_of(layer)
    moves = window.moves
    viewer.dims.set_current_step(0, 110)  # inside the window: the layer is not touched
    qtbot.wait(400)
    assert window.moves == moves

    viewer.dims.set_current_step(0, 2500)  # far: the window moves (coalesced, on a timer)
    qtbot.waitUntil(lambda: window.moves > moves, timeout=3000)
    frames = layer.data[:, 1]
    for track in range(1, 9):
        here = frames[layer.data[:, 0] == track]
        assert {2470, 2485, 2500} <= set(here.astype(int))  # the tail around the new frame
    assert not np.any((frames > 0) & (frames < 2000))  # the old window's rows are gone
    assert_colours_per_label(layer, 8)

    # saving (File > Save through the plugin's writer) and measuring read all rows
    path = tmp_path / "smoothed.csv"
    napari.save_layers(str(path), [layer], plugin="napari-dustrack")
    saved = read_points(path)
    assert len(saved) == len(data)
    assert set(saved["frame"]) == set(range(3000))
    measured = layer_table(layer)
    assert len(measured) == len(data) and set(measured["label"]) == set(features["label"])
    full_data, _ = full_tracks(layer.data, layer.features, layer.metadata)
    np.testing.assert_array_equal(full_data, data)


def test_accepted_annotations_of_a_long_cine_are_windowed_while_scrubbing(viewer, qtbot):
    # 8 labels x 2,000 frames: what accepting the confident predictions of a long cine leaves in
    # the annotation tracks. Shown whole, every paint drew all 16,000 vertices (~12 ms of the GUI
    # thread under software OpenGL); through the window a paint draws ~1,700
    data, features = table(8, 2000)
    layer = show(viewer, data, features, 8)
    window = _track_window.window_of(layer)
    assert window is not None and len(layer.data) < 2000
    for frame in (0, 700, 1400, 1999):  # a scrub: each frame's tail is there once it settles
        viewer.dims.set_current_step(0, frame)
        qtbot.waitUntil(lambda f=frame: not window._needs_move(), timeout=3000)
        qtbot.wait(50)
        for track in range(1, 9):
            here = set(layer.data[layer.data[:, 0] == track, 1].astype(int))
            assert set(range(max(0, frame - 30), frame + 1)) <= here
        assert len(layer.data) < 2000
    full_data, _ = full_tracks(layer.data, layer.features, layer.metadata)
    np.testing.assert_array_equal(full_data, data)


def test_hidden_layer_is_not_moved_until_shown(viewer, qtbot):
    data, features = table(8, 3000)
    layer = show(viewer, data, features, 8)
    window = _track_window.window_of(layer)
    layer.visible = False
    moves = window.moves
    viewer.dims.set_current_step(0, 2000)
    qtbot.wait(400)
    assert window.moves == moves
    layer.visible = True
    qtbot.waitUntil(lambda: window.moves > moves, timeout=3000)
    assert 2000 in set(layer.data[:, 1].astype(int))


def test_new_table_replaces_the_window_and_a_short_table_keeps_all_rows(viewer, qtbot):
    data, features = table(8, 3000)
    layer = show(viewer, data, features, 8)
    assert _track_window.window_of(layer) is not None
    short, short_features = table(3, 600)  # 1,800 rows: shown whole, as before
    assert show(viewer, short, short_features, 3, layer=layer) is layer
    np.testing.assert_array_equal(layer.data, short)
    assert _track_window.window_of(layer) is None
    full_data, _ = full_tracks(layer.data, layer.features, layer.metadata)
    assert len(full_data) == len(short)
    assert_colours_per_label(layer, 3)
    assert len(layer_table(layer)) == len(short)


def test_a_new_short_layer_keeps_all_rows(viewer):
    data, features = table(3, 600)
    layer = show(viewer, data, features, 3)
    np.testing.assert_array_equal(layer.data, data)
    assert _track_window.window_of(layer) is None
    assert_colours_per_label(layer, 3)


def test_removed_layer_stops_following(viewer, qtbot):
    data, features = table(8, 3000)
    layer = show(viewer, data, features, 8)
    window = _track_window.window_of(layer)
    viewer.layers.remove(layer)
    assert _track_window.window_of(layer) is None
    viewer.dims.set_current_step(0, 2500)
    qtbot.wait(400)
    assert window.moves == 1


def test_a_window_move_does_not_tell_listeners_the_table_changed(viewer, qtbot):
    data, features = table(8, 3000)
    layer = show(viewer, data, features, 8)
    told = []
    layer.events.data.connect(lambda event: told.append("data"))
    window = _track_window.window_of(layer)
    viewer.dims.set_current_step(0, 2900)
    qtbot.waitUntil(lambda: window.moves > 1, timeout=3000)
    assert 2900 in set(layer.data[:, 1].astype(int)) and told == []
    assert viewer.dims.range[0].stop >= 2999
    show(viewer, data[::2], features.iloc[::2], 8, layer=layer)  # a new table: told
    assert "data" in told


def test_3d_shows_every_frame_and_2d_the_window_again(viewer, qtbot):
    data, features = table(8, 3000)
    layer = show(viewer, data, features, 8)
    window = _track_window.window_of(layer)
    viewer.dims.ndisplay = 3
    qtbot.waitUntil(lambda: len(layer.data) == len(data), timeout=3000)
    moves = window.moves
    viewer.dims.ndisplay = 2
    qtbot.waitUntil(lambda: window.moves > moves, timeout=3000)
    assert len(layer.data) < len(data) // 5


def test_a_layer_built_in_a_worker_from_seed_rows_gets_its_window(viewer):
    # the Model and Smooth tabs build a new layer in a worker thread from seed_rows
    data, features = table(8, 3000)
    rows, row_features = _track_window.seed_rows(data, features)
    assert len(rows) == 2  # the first and the last frame: the extent of the whole table
    colormap = label_colormap(COLOURS, "test-labels")
    built = Tracks(rows, features=row_features, colormaps_dict={"colour": colormap})
    viewer.dims.set_current_step(0, 1000)
    layer = show_tracks(viewer, None, data, features, colormap, built)
    assert layer is built
    assert 1000 in set(layer.data[:, 1].astype(int)) and len(layer.data) < len(data) // 5
    assert_colours_per_label(layer, 8)
