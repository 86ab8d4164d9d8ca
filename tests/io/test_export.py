"""Every export reads back as what was exported; the MP4 overlay shows the tracks."""

from __future__ import annotations

import threading

import av
import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import Cancelled, DustrackError
from napari_dustrack.io.export import (
    auto_scale,
    export_mp4,
    export_points,
    guess_format,
    label_colour,
    read_measurements_csv,
    write_measurements_csv,
)
from napari_dustrack.io.points_io import read_points
from napari_dustrack.io.table import from_array, make_table, validate
from napari_dustrack.measure import Calibration, Measure, compute

XY = ["frame", "label", "x", "y"]


@pytest.fixture
def table() -> pd.DataFrame:
    """Three labels over 12 frames with gaps, mixed sources and awkward floats."""
    rng = np.random.default_rng(3)
    n = 12
    xy = np.empty((n, 3, 2))
    xy[:, 0] = np.c_[np.linspace(10.25, 50.5, n), np.full(n, 40.0)]
    xy[:, 1] = np.c_[np.full(n, 30.0), np.linspace(35.0, 20.0, n)]
    xy[:, 2] = np.c_[np.full(n, 52.0), np.linspace(12.0, 20.0, n)] + rng.uniform(-1, 1, (n, 2)) / 3
    xy[4, 1] = np.nan
    xy[7:9, 2] = np.nan
    conf = rng.uniform(0.2, 1.0, (n, 3))
    t = from_array(xy, ["apex", "septum base", "lateral/wall"], source="model", confidence=conf)
    t.loc[t["frame"] < 3, "source"] = "manual"
    t.loc[t["frame"] == 5, "reviewed"] = True
    return validate(t)


def sorted_xy(t: pd.DataFrame) -> pd.DataFrame:
    return t[XY].sort_values(["frame", "label"]).reset_index(drop=True)


def test_point_table_csv_reads_back_identically(tmp_path, table):
    path = export_points(table, tmp_path / "tracks.csv")
    back = read_points(path)
    pd.testing.assert_frame_equal(back, table)


@pytest.mark.parametrize(
    "name", ["CollectedData_dustrack.h5", "CollectedData_dustrack.csv", "labels.csv"]
)
def test_deeplabcut_exports_read_back_identically(tmp_path, table, name):
    path = export_points(
        table, tmp_path / name, fmt="dlc", video=tmp_path / "scan 01.mp4", n_frames=250
    )
    back = read_points(path)
    pd.testing.assert_frame_equal(sorted_xy(back), sorted_xy(table))
    if path.suffix == ".h5":
        raw = pd.read_hdf(path)
    else:
        raw = pd.read_csv(path, header=[0, 1, 2], index_col=[0, 1, 2])
    # DeepLabCut >= 2.3 row index: labeled-data / <video stem> / img<NNN>.png, padded to 3 digits.
    assert raw.index.nlevels == 3
    assert raw.index[0] == ("labeled-data", "scan 01", "img000.png")
    assert list(raw.columns.get_level_values(0).unique()) == ["dustrack"]
    assert list(raw.columns.get_level_values(1).unique()) == ["apex", "septum base", "lateral/wall"]


def test_dustrack_json_reads_back_identically(tmp_path, table):
    path = export_points(table, tmp_path / "scan_annotations_manual.json")
    back = read_points(path)
    pd.testing.assert_frame_equal(sorted_xy(back), sorted_xy(table))


def test_replacing_an_export_keeps_the_old_file(tmp_path, table):
    path = tmp_path / "tracks.csv"
    export_points(table, path)
    export_points(table[table["frame"] < 2], path)
    assert len(pd.read_csv(path.with_name("tracks.csv.bak"))) == len(table)
    assert len(read_points(path)) == len(table[table["frame"] < 2])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp.csv")]


def test_measurements_csv_reads_back_identically(tmp_path, table):
    measures = [
        Measure("d", "distance", ["apex", "septum base"], change="relative"),
        Measure("area", "area", ["apex", "septum base", "lateral/wall"]),
        Measure("v", "velocity", ["apex"]),
    ]
    result = compute(table, measures, Calibration((0.1, 0.15), 30.0), n_frames=14)
    assert result.isna().any().any()  # gaps and frames past the table are empty cells
    path = write_measurements_csv(result, tmp_path / "measures.csv")
    back = read_measurements_csv(path)
    pd.testing.assert_frame_equal(back, result, check_exact=True)
    with pytest.raises(DustrackError, match="no 'frame' column"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_measurements_csv(tmp_path / "bad.csv")


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.csv", "csv"),
        ("CollectedData_me.csv", "dlc"),
        ("a.h5", "dlc"),
        ("a.json", "dustrack"),
        ("a.MP4", "mp4"),
    ],
)
def test_format_from_file_name(name, fmt):
    assert guess_format(name) == fmt


def test_unknown_format_is_a_one_line_error(tmp_path, table):
    with pytest.raises(DustrackError, match="cannot tell the export format"):
        guess_format(tmp_path / "out.xlsx")
    with pytest.raises(DustrackError, match="DeepLabCut files end in .csv or .h5"):
        export_points(table, tmp_path / "out.json", fmt="dlc")


# --- MP4 overlay -----------------------------------------------------------------------------


def textured_frames(n=12, shape=(47, 63)) -> np.ndarray:
    """Grey frames with a faint texture (odd sizes on purpose: H.264 needs even ones)."""
    rng = np.random.default_rng(0)
    base = (90 + 20 * rng.random(shape)).astype(np.uint8)
    return np.repeat(base[None], n, axis=0)


def decode(path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, float(stream.average_rate)


def test_mp4_has_every_frame_at_the_frame_rate_and_dots_on_the_tracks(tmp_path, table):
    frames = textured_frames()
    done = []
    path = export_mp4(
        frames,
        table,
        tmp_path / "overlay.mp4",
        fps=20.0,
        scale=1,
        progress=lambda i, n: done.append((i, n)),
    )
    decoded, rate = decode(path)
    assert len(decoded) == len(frames) and rate == pytest.approx(20.0)
    assert decoded[0].shape == (48, 64, 3)  # padded to even
    assert done[-1] == (len(frames), len(frames))
    labels = ["apex", "septum base", "lateral/wall"]
    palette = np.array([label_colour(i) for i in range(3)])
    for _, row in table.iterrows():
        f, x, y = int(row["frame"]), int(round(row["x"])), int(round(row["y"]))
        got = decoded[f][y, x].astype(int)
        # A coloured dot replaces the grey there; at 2-pixel dots H.264's half-resolution
        # chroma blurs the hue, so ask only for colour, nearest to the label's own.
        assert np.ptp(got) > 40 and np.abs(got - int(frames[f, y, x])).max() > 40, (
            row["label"],
            f,
            got,
        )
        nearest = np.argmin(np.abs(palette - got).sum(axis=1))
        assert labels[nearest] == row["label"], (row["label"], f, got)
    # A point missing in a frame gets no dot there: septum base is absent on frame 4.
    y, x = 29, 30  # its place on frames 3 and 5, away from other labels
    assert np.abs(decoded[4][y, x].astype(int) - int(frames[4, y, x])).max() < 25


def test_mp4_auto_scale_keeps_dots_on_pixel_centres(tmp_path, table):
    frames = textured_frames(n=3)
    k = auto_scale(frames.shape[1:])
    assert k == int(np.ceil(384 / 47))
    decoded, _ = decode(export_mp4(frames, table, tmp_path / "big.mp4", fps=10))
    assert decoded[0].shape[:2] == (47 * k + (47 * k) % 2, 63 * k + (63 * k) % 2)
    row = table[(table["frame"] == 1) & (table["label"] == "apex")].iloc[0]
    cx, cy = row["x"] * k + (k - 1) / 2, row["y"] * k + (k - 1) / 2
    got = decoded[1][int(round(cy)), int(round(cx))].astype(int)
    assert np.abs(got - np.array(label_colour(0))).max() < 60


def test_mp4_cancel_leaves_no_file(tmp_path, table):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        export_mp4(textured_frames(), table, tmp_path / "c.mp4", fps=10, scale=1, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_mp4_draws_from_a_table_with_one_label_and_custom_colour(tmp_path):
    t = make_table([0, 1], "tip", [20.0, 22.0], [20.0, 20.0])
    decoded, _ = decode(
        export_mp4(
            textured_frames(n=2), t, tmp_path / "o.mp4", fps=5, scale=1, colours={"tip": "#ff0000"}
        )
    )
    r, g, b = decoded[1][20, 22].astype(int)
    assert r > 180 and g < 80 and b < 80
