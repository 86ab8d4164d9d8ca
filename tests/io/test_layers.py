import numpy as np
import pandas as pd

from napari_dustrack.io.layers import (
    points_to_table,
    table_to_points,
    table_to_tracks,
    tracks_to_table,
)
from napari_dustrack.io.table import make_table


def _table():
    return make_table(
        [0, 1, 4, 0],
        ["apex", "apex", "apex", "base"],
        [1, 2, 3, 9],
        [5, 6, 7, 8],
        source=["manual", "flow", "flow", "manual"],
        confidence=[1, 0.5, 0.25, 1],
    )


def test_points_round_trip():
    t = _table()
    data, features = table_to_points(t)
    assert data.shape == (4, 3) and data[0].tolist() == [0, 5, 1]
    pd.testing.assert_frame_equal(points_to_table(data, features), t)


def test_tracks_one_track_per_label_sorted_and_gaps_left_out():
    data, features = table_to_tracks(_table())
    assert data[:, 0].tolist() == [1, 1, 1, 2]
    assert data[:, 1].tolist() == [0, 1, 4, 0]
    assert not np.isnan(data).any()
    back = tracks_to_table(data, row_labels=features["label"], source="flow")
    assert sorted(back["label"]) == ["apex", "apex", "apex", "base"]
    by_ids = tracks_to_table(data, track_labels=["apex", "base"])
    assert by_ids.loc[by_ids.frame == 4, "label"].item() == "apex"
