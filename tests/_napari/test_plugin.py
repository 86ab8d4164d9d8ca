"""The plugin as a user meets it in napari: dock widget, sample data, writers."""

import time

import numpy as np
import pandas as pd
import pytest
from napari.layers import Image, Points

from napari_dustrack.io.table import make_table, read_points_csv

pytestmark = pytest.mark.gui


def test_dock_widget_opens_with_tabs(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-dustrack", "DUSTrack")
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == [
        "Annotate",
        "Model",
        "Smooth",
        "Measure",
    ]


def test_sample_data_opens_lazily_with_ground_truth(make_napari_viewer, tmp_path, monkeypatch):
    from napari_dustrack._napari import sample_data

    monkeypatch.setenv(sample_data.CACHE_ENV, str(tmp_path))  # a first use: nothing cached
    viewer = make_napari_viewer()
    start = time.perf_counter()
    viewer.open_sample("napari-dustrack", "cardiac")
    seconds = time.perf_counter() - start
    image = [layer for layer in viewer.layers if isinstance(layer, Image)][0]
    assert image.data.ndim == 3 and image.data.shape[0] > 50
    assert image.metadata["dustrack"]["fps"] > 0
    assert image.metadata["dustrack"]["path"].startswith(str(tmp_path))  # a writable copy
    points = [layer for layer in viewer.layers if isinstance(layer, Points)]
    assert points and len(points[0].data) > 0
    assert tuple(points[0].scale) == tuple(image.scale)
    assert [str(u) for u in image.units] == ["second", "millimeter", "millimeter"]
    # the shipped cine is copied, not simulated (that takes ~15 s): far below that
    assert seconds < 8, seconds


def test_points_and_tracks_writers_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    table = make_table([0, 2, 3], ["apex", "apex", "base"], [10.5, 11, 30], [20, 21.25, 40])
    from napari_dustrack.io.layers import table_to_points, table_to_tracks

    data, features = table_to_points(table)
    viewer.add_points(data, features=features, name="pts")
    tdata, tfeatures = table_to_tracks(table)
    viewer.add_tracks(tdata, features=tfeatures, name="trk")
    viewer.layers["pts"].save(str(tmp_path / "pts.csv"), plugin="napari-dustrack")
    viewer.layers["trk"].save(str(tmp_path / "trk.csv"), plugin="napari-dustrack")
    pd.testing.assert_frame_equal(read_points_csv(tmp_path / "pts.csv"), table)
    back = read_points_csv(tmp_path / "trk.csv")
    assert np.allclose(
        back.sort_values(["label", "frame"])[["x", "y"]],
        table.sort_values(["label", "frame"])[["x", "y"]],
    )


@pytest.mark.parametrize("suffix", [".h5", ".json"])
def test_points_save_as_deeplabcut_h5_and_dustrack_json(make_napari_viewer, tmp_path, suffix):
    from napari_dustrack.io.layers import table_to_points
    from napari_dustrack.io.points_io import read_points

    viewer = make_napari_viewer()
    table = make_table([0, 2, 3], ["apex", "apex", "base"], [10.5, 11, 30], [20, 21.25, 40])
    data, features = table_to_points(table)
    viewer.add_points(data, features=features, name="pts")
    name = "pts_annotations_manual" if suffix == ".json" else "CollectedData_me"
    path = tmp_path / f"{name}{suffix}"
    viewer.layers["pts"].save(str(path), plugin="napari-dustrack")
    back = read_points(path).sort_values(["frame", "label"]).reset_index(drop=True)
    np.testing.assert_allclose(
        back[["frame", "x", "y"]].to_numpy(float), table[["frame", "x", "y"]].to_numpy(float)
    )
    assert list(back["label"]) == ["apex", "apex", "base"]


def test_menus_open_the_dock_and_a_display_only_clahe_view(make_napari_viewer, tmp_path):
    from napari_dustrack._napari import menus

    viewer = make_napari_viewer()
    dark = (np.random.default_rng(0).integers(0, 30, (4, 48, 64))).astype(np.uint8)
    cine = viewer.add_image(
        dark,
        name="cine",
        scale=(0.02, 0.3, 0.3),
        metadata={"dustrack": {"path": str(tmp_path / "x.mp4")}},
    )
    menus.enhance_contrast(viewer)
    view = viewer.layers["cine (CLAHE, display)"]
    assert view.metadata["dustrack"]["role"] == "display"  # the widgets never track on it
    assert tuple(view.scale) == tuple(cine.scale)
    frame = np.asarray(view.data[2])
    assert frame.shape == dark.shape[1:] and frame.std() > 2 * dark[2].std()
    # as the menu runs it: napari's app model injects the viewer
    from napari._app_model import get_app_model

    app = get_app_model()
    assert "napari-dustrack.open_dock" in [
        item.command.id for item in app.menus.get_menu("napari/layers/track")
    ]
    app.commands.execute_command("napari-dustrack.open_dock").result()
    assert "DUSTrack" in " ".join(viewer.window.dock_widgets.keys())
