"""DeepLabCut and DUSTrack files: the real files in ../shared/interop, and round trips."""

import json

import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.dustrack_json import dustrack_json_name, layer_of
from napari_dustrack.io.points_io import guess_format, read_points, write_points
from napari_dustrack.io.table import make_table


def test_dlc_mackenzie_single_path_index(interop):
    t = read_points(interop / "dlc_CollectedData_Mackenzie.csv")
    assert list(dict.fromkeys(t["label"])) == ["hand", "Finger1", "Finger2", "Joystick"]
    row = t[(t.frame == 33) & (t.label == "Finger1")].iloc[0]
    assert (row.x, row.y) == (409.0, 190.0)
    assert set(t.source) == {"manual"}


def test_dlc_pranav_zero_padded_names(interop):
    t = read_points(interop / "dlc_CollectedData_Pranav.csv")
    assert sorted(t.frame.unique()) == list(range(20))
    row = t[(t.frame == 1) & (t.label == "tailbase")].iloc[0]
    assert np.isclose(row.x, 95.821) and np.isclose(row.y, 221.361)


def test_dlc_predictions_likelihood_becomes_confidence(interop):
    t = read_points(interop / "dlc_predictions_filtered.csv")
    row = t[(t.frame == 0) & (t.label == "bodypart2")].iloc[0]
    assert np.isclose(row.confidence, 0.4974837005138397)
    assert set(t.source) == {"model"}


def test_dustrack_json_from_dustrack(interop):
    path = interop / "tiny_cine_annotations_manual.json"
    assert layer_of(path) == "manual"
    t = read_points(path)
    assert sorted(t.frame.unique()) == [0, 10, 20, 29]
    row = t[(t.frame == 29) & (t.label == "1")].iloc[0]
    assert (row.x, row.y) == (114.75, 76.3)


def test_dlc_three_level_index_and_h5_round_trip(tmp_path):
    t = make_table(
        [0, 0, 7, 12], ["snout", "tail", "snout", "tail"], [1.5, 2, 3, 4], [5, 6, 7, 8.25]
    )
    for name in ("CollectedData_me.csv", "CollectedData_me.h5"):
        write_points(t, tmp_path / name, scorer="me", video="vid", n_frames=100)
        back = read_points(tmp_path / name)
        pd.testing.assert_frame_equal(back, t)
    header = (tmp_path / "CollectedData_me.csv").read_text().splitlines()
    assert header[0].startswith("scorer,,,me") and "labeled-data,vid,img007.png" in header[4]
    frame = pd.read_hdf(tmp_path / "CollectedData_me.h5")
    assert frame.columns.names == ["scorer", "bodyparts", "coords"]


def test_dustrack_json_round_trip_and_name(tmp_path):
    t = make_table([0, 10, 0], ["0", "0", "1"], [40, 45, 100.25], [50, 52, 70.5])
    path = dustrack_json_name(tmp_path / "cine.mp4", "manual")
    assert path.name == "cine_annotations_manual.json"
    write_points(t, path)
    assert json.loads(path.read_text())["0"]["10"] == [45.0, 52.0]
    pd.testing.assert_frame_equal(read_points(path), t)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("a.json", "{not json", "malformed JSON"),
        ("a.json", '["x"]', "expected a JSON object"),
        ("a.json", '{"p": {"0": [1]}}', "expected \\[x, y\\]"),
        ("a.json", '{"p": {"0": [NaN, 1]}}', "NaN"),
        ("a.csv", "scorer,me\nbodyparts,a\n", "DeepLabCut"),
        ("a.csv", "frame,label,x,y\n0,a,1,2\n0,a,3,4\n", "duplicate"),
        ("a.csv", "frame,label,x,y\n0,a,,2\n", "NaN"),
        ("a.h5", "not hdf5", "cannot read as DeepLabCut"),
        ("a.txt", "hello", "unsupported point file type"),
        ("e.csv", "", "file is empty"),
    ],
)
def test_malformed_point_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DustrackError, match=message) as info:
        read_points(path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_guess_format(tmp_path, interop):
    assert guess_format(interop / "dlc_CollectedData_Pranav.csv") == "dlc"
    assert guess_format(tmp_path / "x.json") == "dustrack"
    (tmp_path / "p.csv").write_text("frame,label,x,y\n")
    assert guess_format(tmp_path / "p.csv") == "csv"
