"""`napari-dustrack train` and `predict` end to end: real video, real dask workers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_dustrack.cli import main
from napari_dustrack.io.table import read_points_csv, write_points_csv
from napari_dustrack.io.video_write import write_video
from napari_dustrack.simulate import simulate, write_simulation

LABELS = ["septal", "lateral"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    sim = simulate("cardiac", n_frames=24, shape=(64, 64), seed=3)
    paths = write_simulation(sim, root)
    truth = sim.truth[sim.truth["label"].isin(LABELS)]
    labels = root / "labels.csv"
    write_points_csv(truth[truth["frame"] % 4 == 0], labels, backup=False)
    return root, paths["video"], labels, truth


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_predict_retrain(data, scheduler, tmp_path, capsys):
    _, video, labels, truth = data
    model = tmp_path / "model"
    code, out, err = run_cli(
        capsys,
        "train",
        video,
        "--labels",
        labels,
        "--model",
        model,
        "--minutes",
        0.15,
        "--scheduler",
        scheduler,
    )
    assert code == 0, err
    assert "saved model iteration 1" in out
    meta = json.loads((model / "model.json").read_text())
    assert meta["labels"] == LABELS and meta["training_frames"] == list(range(0, 24, 4))

    raw = tmp_path / "raw.csv"
    code, out, err = run_cli(
        capsys, "predict", video, "--model", model, "--out", raw, "--scheduler", scheduler
    )
    assert code == 0, err
    table = read_points_csv(raw)
    assert set(table["source"]) == {"model"} and sorted(table["label"].unique()) == sorted(LABELS)
    assert table["frame"].nunique() == 24
    assert table["confidence"].between(0, 1).all() and table["confidence"].std() > 0

    # Three corrected frames (manual now) are added and the model retrained: iteration 2.
    more = truth[truth["frame"].isin([2, 13, 22])]
    write_points_csv(
        pd.concat([read_points_csv(labels), more]), tmp_path / "more.csv", backup=False
    )
    code, out, err = run_cli(
        capsys,
        "train",
        video,
        "--labels",
        tmp_path / "more.csv",
        "--model",
        model,
        "--minutes",
        0.1,
        "--scheduler",
        scheduler,
    )
    assert code == 0, err
    assert "continuing from iteration 1" in err and "saved model iteration 2" in out
    assert 13 in json.loads((model / "model.json").read_text())["training_frames"]


def test_bad_input_gives_one_line_errors(data, scheduler, tmp_path, capsys):
    _, video, labels, truth = data
    one = tmp_path / "one.csv"
    write_points_csv(truth[truth["frame"] == 0], one, backup=False)
    code, _, err = run_cli(
        capsys,
        "train",
        video,
        "--labels",
        one,
        "--model",
        tmp_path / "m1",
        "--scheduler",
        scheduler,
    )
    assert code == 2 and "1 usable frame(s)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m1" / "model.json").exists()

    code, _, err = run_cli(
        capsys,
        "predict",
        video,
        "--model",
        tmp_path,
        "--out",
        tmp_path / "o.csv",
        "--scheduler",
        scheduler,
    )
    assert code == 2 and "not a model folder" in err

    # A model with other labels is not overwritten by a training with these labels.
    model = tmp_path / "m2"
    other = truth.replace({"label": {"septal": "apex"}})
    write_points_csv(other[other["frame"] % 6 == 0], tmp_path / "other.csv", backup=False)
    code, _, err = run_cli(
        capsys,
        "train",
        video,
        "--labels",
        tmp_path / "other.csv",
        "--model",
        model,
        "--minutes",
        0.05,
        "--scheduler",
        scheduler,
    )
    assert code == 0, err
    before = (model / "model.json").read_text()
    code, _, err = run_cli(
        capsys, "train", video, "--labels", labels, "--model", model, "--scheduler", scheduler
    )
    assert code == 2 and "holds a model for labels" in err
    assert (model / "model.json").read_text() == before

    small = write_video(np.zeros((4, 16, 16), np.uint8), tmp_path / "small.mp4", 10.0)
    code, _, err = run_cli(
        capsys,
        "predict",
        small,
        "--model",
        model,
        "--out",
        tmp_path / "s.csv",
        "--scheduler",
        scheduler,
    )
    assert code == 2 and "smaller than the model's working size" in err
    assert not (tmp_path / "s.csv").exists()

    weights = model / json.loads(before)["weights"]
    weights.write_bytes(weights.read_bytes()[:1000])
    code, _, err = run_cli(
        capsys,
        "predict",
        video,
        "--model",
        model,
        "--out",
        tmp_path / "c.csv",
        "--scheduler",
        scheduler,
    )
    assert code == 2 and "corrupt" in err and str(weights) in err
