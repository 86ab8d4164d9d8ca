import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import (
    from_array,
    labels_of,
    make_table,
    read_points_csv,
    to_array,
    training_rows,
    validate,
    write_points_csv,
)


def _table():
    return make_table(
        [0, 0, 3, 5],
        ["b", "a", "b", "a"],
        [1.5, 2.0, 3.25, 4.0],
        [10, 11, 12, 13.5],
        source=["manual", "flow", "flow", "manual"],
        reviewed=[False, False, True, False],
    )


def test_validate_fills_defaults_and_sorts_by_frame():
    t = validate(pd.DataFrame({"frame": [2, 0], "label": ["a", "a"], "x": [1, 2], "y": [3, 4]}))
    assert list(t["frame"]) == [0, 2]
    assert set(t["source"]) == {"manual"}
    assert (t["confidence"] == 1).all() and not t["reviewed"].any()


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"frame": [0], "label": ["a"], "x": [1.0]}), r"missing column\(s\) y"),
        (pd.DataFrame({"frame": [0], "label": ["a"], "x": [np.nan], "y": [1.0]}), "NaN"),
        (
            pd.DataFrame({"frame": [0, 0], "label": ["a", "a"], "x": [1, 2], "y": [1, 2]}),
            "duplicate",
        ),
        (pd.DataFrame({"frame": [-1], "label": ["a"], "x": [1], "y": [1]}), "whole numbers"),
        (pd.DataFrame({"frame": [0.5], "label": ["a"], "x": [1], "y": [1]}), "whole numbers"),
        (pd.DataFrame({"frame": [0], "label": ["a"], "x": ["abc"], "y": [1]}), "non-numeric x"),
        (
            pd.DataFrame({"frame": [0], "label": ["a"], "x": [1], "y": [1], "source": ["guess"]}),
            "unknown source",
        ),
        (
            pd.DataFrame({"frame": [0], "label": ["a"], "x": [1], "y": [1], "confidence": [2]}),
            "0..1",
        ),
    ],
)
def test_validate_rejects_bad_tables_with_one_line(frame, message):
    with pytest.raises(DustrackError, match=message) as info:
        validate(frame, path="pts.csv")
    assert str(info.value).startswith("pts.csv: ") and "\n" not in str(info.value)


def test_array_round_trip_keeps_gaps():
    t = _table()
    xy, labels = to_array(t, n_frames=6)
    assert labels == ["b", "a"] and xy.shape == (6, 2, 2)
    assert np.isnan(xy[1]).all() and xy[3, 0].tolist() == [3.25, 12.0]
    back = from_array(xy, labels, source="manual")
    assert len(back) == len(t)
    merged = back.merge(t, on=["frame", "label"], suffixes=("", "_t"))
    assert np.allclose(merged["x"], merged["x_t"]) and np.allclose(merged["y"], merged["y_t"])


def test_to_array_of_a_column():
    conf, _ = to_array(_table(), labels=["a", "b"], n_frames=6, column="reviewed")
    assert conf[3, 1] == 1 and conf[0, 0] == 0 and np.isnan(conf[1, 0])


def test_training_rows_are_manual_or_reviewed():
    rows = training_rows(_table())
    assert sorted(rows["frame"].tolist()) == [0, 3, 5]


def test_csv_round_trip_is_exact_and_keeps_backup(tmp_path):
    t = _table()
    path = tmp_path / "points.csv"
    write_points_csv(t, path)
    pd.testing.assert_frame_equal(read_points_csv(path), t)
    write_points_csv(t.iloc[:2], path)
    assert (tmp_path / "points.csv.bak").exists()
    assert len(read_points_csv(tmp_path / "points.csv.bak")) == 4
    assert labels_of(read_points_csv(path)) == ["b", "a"]


def test_malformed_and_empty_csv_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('frame,label,x,y\n0,a,"1\n')
    with pytest.raises(DustrackError, match="bad.csv"):
        read_points_csv(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DustrackError, match="empty.csv: malformed CSV"):
        read_points_csv(empty)
