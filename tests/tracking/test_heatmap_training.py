"""Real (short) trainings of the U-Net on a simulated cine; prediction, retraining, review."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import from_array, to_array
from napari_dustrack.simulate import simulate
from napari_dustrack.tracking.heatmap import HeatmapConfig
from napari_dustrack.tracking.heatmap.predict import predict, predict_video
from napari_dustrack.tracking.heatmap.store import load_model, read_meta
from napari_dustrack.tracking.heatmap.train import train
from napari_dustrack.tracking.review import frames_to_review

pytestmark = pytest.mark.slow
N_FRAMES = 36
LABELS = ["anterior_endo", "septal", "lateral"]
# A fixed number of steps (not the clock) so the result does not depend on the machine's load.
QUICK = {"scale": 0.5, "minutes": 5.0, "max_epochs": 20, "seed": 0}


class Cine:
    """Simulated frames whose content also moves by a known large shift (probe motion), so
    that following the image, not guessing a mean position, is what scores."""

    def __init__(self, n, size):
        sim = simulate("cardiac", n_frames=n, shape=(size, size), seed=1)
        t = np.arange(n)
        self.shift = np.stack(
            [0.09 * size * np.sin(2 * np.pi * t / 17), 0.07 * size * np.cos(2 * np.pi * t / 23)],
            axis=1,
        )
        self.frames = np.stack(
            [
                cv2.warpAffine(
                    f,
                    np.float32([[1, 0, dx], [0, 1, dy]]),
                    (size, size),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REFLECT_101,
                )
                for f, (dx, dy) in zip(sim.frames, self.shift, strict=False)
            ]
        )
        xy, _ = to_array(sim.truth, LABELS, n)
        self.truth = from_array(xy + self.shift[:, None, :], LABELS, source="manual")


@pytest.fixture(scope="module")
def sim():
    return Cine(N_FRAMES, 128)


@pytest.fixture(scope="module")
def keyframes():
    return np.arange(0, N_FRAMES, 3)


@pytest.fixture(scope="module")
def trained(sim, keyframes, tmp_path_factory):
    folder = tmp_path_factory.mktemp("heatmap") / "model"
    logs = []
    meta = train(
        sim.frames,
        sim.truth[sim.truth["frame"].isin(keyframes)],
        folder,
        HeatmapConfig(**QUICK),
        log=logs.append,
    )
    return folder, meta, logs


def errors(pred_table, truth, n):
    p, _ = to_array(pred_table, LABELS, n)
    g, _ = to_array(truth, LABELS, n)
    return np.linalg.norm(p - g, axis=-1)


def test_training_learns_the_points(sim, keyframes, trained):
    folder, _, logs = trained
    table = predict_video(sim.frames, folder)
    assert set(table["source"]) == {"model"} and table["frame"].nunique() == N_FRAMES
    assert ((table["confidence"] >= 0) & (table["confidence"] <= 1)).all()
    err = errors(table, sim.truth, N_FRAMES)
    unlabelled = np.setdiff1d(np.arange(N_FRAMES), keyframes)
    # Baseline: each label's mean training position (what a model that ignores the image does).
    truth_xy, _ = to_array(sim.truth, LABELS, N_FRAMES)
    static = np.linalg.norm(truth_xy - truth_xy[keyframes].mean(axis=0), axis=-1)
    assert np.median(static[unlabelled]) > 5.0
    # Half the baseline's error: clearly following the image (20 epochs end at 0.39-0.41x
    # depending on the CPU's kernels and thread count, so a tighter bound is not portable).
    assert np.median(err[unlabelled]) < 0.5 * np.median(static[unlabelled])
    assert any("val_error_px" in entry for entry in logs)
    assert all(np.isfinite(entry["loss"]) for entry in logs)


def test_model_folder_describes_the_training(trained, keyframes):
    folder, meta, _ = trained
    assert meta == read_meta(folder)
    assert meta["labels"] == LABELS and meta["iteration"] == 1
    assert meta["working_size"] == [64, 64] and meta["source_size"] == [128, 128]
    assert meta["training_frames"] == keyframes.tolist()
    assert meta["architecture"]["classes"] == 3 and meta["architecture"]["in_channels"] == 1
    assert meta["metrics"]["val_error_px"] == min(h["val_error_px"] for h in meta["history"])
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".safetensors"]


def test_retrain_continues_from_the_model(sim, keyframes, trained, tmp_path):
    folder, meta, _ = trained
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    more = np.union1d(keyframes, [4, 20])
    logs = []
    meta2 = train(
        sim.frames,
        sim.truth[sim.truth["frame"].isin(more)],
        copy,
        HeatmapConfig(**dict(QUICK, max_epochs=1)),
        log=logs.append,
    )
    assert meta2["iteration"] == 2 and meta2["training_frames"] == more.tolist()
    # It starts where the first model was, not from scratch (a fresh net is tens of px off).
    first_val = next(e["val_error_px"] for e in logs if "val_error_px" in e)
    assert first_val < 2 * meta["metrics"]["val_error_px"] + 1.0
    with pytest.raises(DustrackError, match="holds a model for labels"):
        train(sim.frames, sim.truth[sim.truth["label"] == "septal"], copy, HeatmapConfig(**QUICK))
    assert read_meta(copy)["iteration"] == 2  # the failed call wrote nothing


def test_predict_streams_batches_and_checks_size(sim, trained):
    folder, _, _ = trained
    model = load_model(folder)
    seen = []
    xy, conf = predict(sim.frames, model, batch_size=8, on_batch=lambda f, p, c: seen.append(f))
    assert [len(f) for f in seen] == [8, 8, 8, 8, 4]
    assert np.concatenate(seen).tolist() == list(range(N_FRAMES))
    assert xy.shape == (N_FRAMES, 3, 2) and conf.shape == (N_FRAMES, 3)
    with pytest.raises(DustrackError, match="smaller than the model's working size"):
        predict(sim.frames[:, :48, :48], model)


def test_review_points_at_frames_where_the_model_is_wrong(sim, trained):
    folder, _, _ = trained
    table = predict_video(sim.frames, folder)
    # A confident prediction broken on two frames: one jumps away, one is unsure.
    table["confidence"] = 0.9
    jump = (table["frame"] == 17) & (table["label"] == "septal")
    table.loc[jump, "x"] += 12
    table.loc[table["frame"] == 28, "confidence"] = 0.05
    ranked = frames_to_review(sim.frames, table, top=5)
    assert ranked["frame"].iloc[:2].tolist() in ([17, 28], [28, 17])
    reasons = dict(zip(ranked["frame"], ranked["reason"], strict=False))
    assert "optical flow" in reasons[17] and "septal" in reasons[17]
    assert "low confidence 0.05" in reasons[28]


def test_cancel_keeps_the_best_checkpoint(sim, keyframes, tmp_path):
    cancel = threading.Event()
    seen = []

    def log(entry):
        seen.append(entry)
        if len(seen) >= 2:
            cancel.set()

    meta = train(
        sim.frames,
        sim.truth[sim.truth["frame"].isin(keyframes)],
        tmp_path / "m",
        HeatmapConfig(scale=0.5, minutes=10.0, seed=0),
        cancel=cancel,
        log=log,
    )
    assert meta["metrics"]["cancelled"] is True
    assert meta["metrics"]["steps"] < 20
    load_model(tmp_path / "m")  # a complete, loadable model


def test_same_seed_same_model(sim, keyframes, tmp_path):
    import torch

    cfg = HeatmapConfig(scale=0.25, minutes=5.0, max_epochs=1, seed=3)
    labelled = sim.truth[sim.truth["frame"].isin(keyframes)]
    train(sim.frames, labelled, tmp_path / "a", cfg)
    train(sim.frames, labelled, tmp_path / "b", cfg)
    train(sim.frames, labelled, tmp_path / "c", cfg.replace(seed=4))
    a, b, c = (load_model(tmp_path / n).net.state_dict() for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
