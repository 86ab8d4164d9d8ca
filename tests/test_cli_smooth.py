"""`napari-dustrack smooth` end to end on a simulated cine written to disk."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_dustrack.cli import main
from napari_dustrack.io.cine import open_cine
from napari_dustrack.io.points_io import read_points, write_points
from napari_dustrack.io.table import from_array, labels_of, to_array
from napari_dustrack.simulate import simulate, write_simulation
from napari_dustrack.tracking.smoothing import smooth


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_smooth")
    sim = simulate("cardiac", n_frames=30, shape=(96, 96), seed=2)
    paths = write_simulation(sim, out)
    labels = labels_of(sim.truth)
    truth, _ = to_array(sim.truth, labels, len(sim.frames))
    rng = np.random.default_rng(0)
    raw = truth + rng.normal(0, 1.2, truth.shape)
    raw_csv = out / "raw.csv"
    write_points(from_array(raw, labels, source="model"), raw_csv)
    return sim, paths["video"], raw_csv, raw, truth, labels


def test_smooth_writes_smoothed_table_equal_to_the_api(case, tmp_path):
    sim, video, raw_csv, raw, truth, labels = case
    out = tmp_path / "smoothed.csv"
    assert (
        main(
            [
                "smooth",
                str(video),
                "--tracks",
                str(raw_csv),
                "--window",
                "0.2",
                "--mode",
                "fast",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = read_points(out)
    assert set(table["source"]) == {"smoothed"}
    got, _ = to_array(table, labels, len(sim.frames))
    with open_cine(video) as cine:
        window = round(0.2 * cine.fps)
        expected = smooth(cine, raw, window, "fast")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    err = lambda a: np.sqrt(np.mean(np.sum((a - truth) ** 2, axis=-1)))  # noqa: E731
    assert err(got) < err(raw)


def test_smooth_default_mode_as_a_subprocess(case, tmp_path):
    _, video, raw_csv, _, _, _ = case
    out = tmp_path / "fused.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_dustrack",
            "smooth",
            str(video),
            "--tracks",
            str(raw_csv),
            "--window-frames",
            "7",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mode fusion" in proc.stdout and "window 7 frames" in proc.stdout
    assert len(read_points(out)) == len(read_points(raw_csv))


def test_smooth_bad_input(case, tmp_path, capsys):
    sim, video, raw_csv, raw, _, labels = case
    out = str(tmp_path / "o.csv")
    # a TIFF stack has no frame rate: the window must be given in frames
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, sim.frames)
    assert main(["smooth", str(tif), "--tracks", str(raw_csv), "--out", out]) == 2
    assert "--window-frames" in capsys.readouterr().err
    assert (
        main(["smooth", str(tif), "--tracks", str(raw_csv), "--window-frames", "5", "--out", out])
        == 0
    )
    # tracks of another (longer) video
    longer = tmp_path / "longer.csv"
    write_points(from_array(np.concatenate([raw, raw]), labels), longer)
    assert main(["smooth", str(video), "--tracks", str(longer), "--out", out]) == 2
    assert "video has 30 frames" in capsys.readouterr().err
    # window longer than the tracks
    assert (
        main(["smooth", str(video), "--tracks", str(raw_csv), "--window", "5", "--out", out]) == 2
    )
    err = capsys.readouterr().err
    assert "fewer than the window" in err and "raw.csv" in err
