"""`napari-dustrack measure` and `export` on real files (simulated MP4, ImageJ TIFF)."""

from __future__ import annotations

import json

import av
import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_dustrack.cli import main
from napari_dustrack.io.export import read_measurements_csv
from napari_dustrack.io.points_io import read_points
from napari_dustrack.io.table import from_array, write_points_csv
from napari_dustrack.measure import Calibration, Measure, compute, save_measures
from napari_dustrack.simulate import simulate, write_simulation

XY = ["frame", "label", "x", "y"]


@pytest.fixture(scope="module")
def muscle(tmp_path_factory):
    """A short simulated muscle cine as H.264 MP4 with its ground truth table."""
    sim = simulate("muscle", n_frames=16, shape=(64, 64))
    paths = write_simulation(sim, tmp_path_factory.mktemp("muscle"))
    return sim, paths["video"], paths["truth"]


def test_measure_writes_the_measures_of_the_tracks_in_px_and_seconds(muscle, tmp_path, capsys):
    sim, video, truth = muscle
    fascicle = ["fascicle_proximal", "fascicle_distal"]
    measures = [
        Measure("fascicle", "distance", fascicle, change="relative"),
        Measure(
            "gm", "architecture", fascicle + ["sup_apo_1", "sup_apo_2", "deep_apo_1", "deep_apo_2"]
        ),
        Measure("tip", "velocity", ["fascicle_distal"]),
    ]
    spec = save_measures(measures, tmp_path / "measures.json")
    out = tmp_path / "measures.csv"
    assert (
        main(
            [
                "measure",
                str(video),
                "--tracks",
                str(truth),
                "--measures",
                str(spec),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert str(out) in capsys.readouterr().out
    result = read_measurements_csv(out)
    # An MP4 knows its frame rate but not its pixel size.
    assert result.columns[:3].tolist() == ["frame", "time [s]", "fascicle strain [-]"]
    assert "gm pennation angle [deg]" in result and "tip speed [px/s]" in result
    np.testing.assert_allclose(result["time [s]"], np.arange(16) / sim.fps)
    table = read_points(truth)
    xy = table.set_index(["frame", "label"])
    length = np.hypot(
        *(
            xy.xs(fascicle[1], level="label")[["x", "y"]].to_numpy()
            - xy.xs(fascicle[0], level="label")[["x", "y"]].to_numpy()
        ).T
    )
    np.testing.assert_allclose(
        result["fascicle strain [-]"], length / length[0] - 1, rtol=1e-9, atol=1e-12
    )
    expected = compute(table, measures, Calibration(None, sim.fps), n_frames=16)
    pd.testing.assert_frame_equal(result, expected, check_exact=False, rtol=1e-12)


def test_measure_uses_the_files_anisotropic_pixel_spacing(tmp_path):
    dy, dx, fps = 0.2, 0.05, 40.0
    stack = tmp_path / "cine.tif"
    tifffile.imwrite(
        stack,
        np.zeros((6, 40, 60), np.uint8),
        imagej=True,
        resolution=(1 / dx, 1 / dy),
        metadata={"unit": "mm", "finterval": 1 / fps},
    )
    xy = np.zeros((6, 2, 2))
    xy[:, 0] = [5.0, 5.0]
    xy[:, 1] = np.c_[5.0 + 3 * np.arange(6), 5.0 + 2 * np.arange(6)]
    tracks = tmp_path / "t.csv"
    write_points_csv(from_array(xy, ["a", "b"]), tracks)
    spec = save_measures([Measure("ab", "distance", ["a", "b"])], tmp_path / "m.json")
    out = tmp_path / "out.csv"
    assert (
        main(
            [
                "measure",
                str(stack),
                "--tracks",
                str(tracks),
                "--measures",
                str(spec),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = read_measurements_csv(out)
    k = np.arange(6)
    np.testing.assert_allclose(result["ab [mm]"], np.hypot(3 * k * dx, 2 * k * dy))
    np.testing.assert_allclose(result["time [s]"], k / fps)


def test_measure_errors_are_one_line_and_name_the_file(muscle, tmp_path, capsys):
    sim, video, truth = muscle
    spec = save_measures(
        [Measure("x", "distance", ["fascicle_proximal", "nowhere"])], tmp_path / "m.json"
    )
    argv = [
        "measure",
        str(video),
        "--tracks",
        str(truth),
        "--measures",
        str(spec),
        "--out",
        str(tmp_path / "o.csv"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(truth) in err and "'nowhere'" in err
    (tmp_path / "bad.json").write_text(
        json.dumps({"measures": [{"name": "x", "kind": "volume", "labels": []}]})
    )
    argv[argv.index("--measures") + 1] = str(tmp_path / "bad.json")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.json" in err and "unknown kind" in err
    late = tmp_path / "late.csv"
    write_points_csv(from_array(np.ones((20, 1, 2)), ["fascicle_proximal"]), late)
    argv[argv.index("--tracks") + 1] = str(late)
    argv[argv.index("--measures") + 1] = str(spec)
    assert main(argv) == 2
    assert "video has 16 frames" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("out.csv", None),
        ("CollectedData_me.h5", None),
        ("dlc.csv", "dlc"),
        ("out_annotations_model.json", None),
    ],
)
def test_export_point_formats_read_back_identically(muscle, tmp_path, name, fmt):
    _, video, truth = muscle
    out = tmp_path / name
    argv = ["export", str(video), "--tracks", str(truth), "--out", str(out)] + (
        ["--format", fmt] if fmt else []
    )
    assert main(argv) == 0
    back, original = read_points(out), read_points(truth)
    if name == "out.csv":
        pd.testing.assert_frame_equal(back, original)
    else:
        key = ["frame", "label"]
        pd.testing.assert_frame_equal(
            back[XY].sort_values(key).reset_index(drop=True),
            original[XY].sort_values(key).reset_index(drop=True),
        )


def test_export_mp4_has_the_cines_frames_and_rate(muscle, tmp_path):
    sim, video, truth = muscle
    out = tmp_path / "tracks.mp4"
    assert main(["export", str(video), "--tracks", str(truth), "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == pytest.approx(sim.fps)
    assert len(frames) == len(sim.frames)
    assert frames[0].shape[:2] == (384, 384)  # 64 px upscaled 6x so labels are readable
    # Colour where the tracks are, in a grey-scale cine.
    row = sim.truth[sim.truth["frame"] == 8].iloc[0]
    y, x = int(round(row["y"] * 6 + 2.5)), int(round(row["x"] * 6 + 2.5))
    assert np.ptp(frames[8][y, x].astype(int)) > 60


def test_export_rejects_an_unknown_output_type(muscle, tmp_path, capsys):
    _, video, truth = muscle
    assert (
        main(["export", str(video), "--tracks", str(truth), "--out", str(tmp_path / "x.xlsx")]) == 2
    )
    assert "x.xlsx" in capsys.readouterr().err
