"""The plugin as a user meets it in napari: dock widget, sample data, writers."""

import numpy as np
import pandas as pd
import pytest

from napari_dustrack.io.table import make_table, read_points_csv

pytestmark = pytest.mark.gui


def test_dock_widget_opens_with_tabs(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-dustrack", "DUSTrack")
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == [
        "Annotate", "Model", "Smooth", "Measure"]


def test_sample_data_opens_lazily_with_ground_truth(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dustrack", "cardiac")
    image = [layer for layer in viewer.layers if layer._type_string == "image"][0]
    assert image.data.ndim == 3 and image.data.shape[0] > 50
    assert image.metadata["dustrack"]["fps"] > 0
    points = [layer for layer in viewer.layers if layer._type_string == "points"]
    assert points and len(points[0].data) > 0


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
    assert np.allclose(back.sort_values(["label", "frame"])[["x", "y"]],
                       table.sort_values(["label", "frame"])[["x", "y"]])
