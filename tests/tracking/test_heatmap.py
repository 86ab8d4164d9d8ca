"""Unit tests of the heatmap model's parts (no training).

torch is imported through the package (which first sets the OpenMP wait policy).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import make_table
from napari_dustrack.tracking.heatmap import HeatmapConfig
from napari_dustrack.tracking.heatmap.augment import AugmentParams, augment
from napari_dustrack.tracking.heatmap.dataset import build_training_set, curated_points, split
from napari_dustrack.tracking.heatmap.geometry import resize_frame, to_full, to_working
from napari_dustrack.tracking.heatmap.loss import heatmap_loss
from napari_dustrack.tracking.heatmap.model import architecture, build_model
from napari_dustrack.tracking.heatmap.peaks import subpixel_peaks
from napari_dustrack.tracking.heatmap.store import load_model, read_meta, save_model

torch = pytest.importorskip("torch")


def blob(shape, x, y, sigma=2.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))


def test_working_grid_matches_opencv_resize():
    # A blob at a sub-pixel position, shrunk by OpenCV, has its centroid where to_working says.
    full = (blob((96, 128), 70.3, 41.8, 3.0) * 255).astype(np.uint8)
    small = resize_frame(full, (48, 64)).astype(float)
    centroid = np.array(
        [(small.sum(0) * np.arange(64)).sum(), (small.sum(1) * np.arange(48)).sum()]
    )
    centroid /= small.sum()
    expected = to_working(np.array([70.3, 41.8]), (96, 128), (48, 64))
    assert np.abs(centroid - expected).max() < 0.05
    np.testing.assert_allclose(to_full(expected, (96, 128), (48, 64)), [70.3, 41.8])


def test_augment_moves_points_with_the_image():
    rng = np.random.default_rng(3)
    img = (blob((64, 64), 20.0, 40.0, 1.5) * 255).astype(np.uint8)
    xy = np.array([[20.0, 40.0], [np.nan, np.nan]])
    quiet = AugmentParams(
        rotate_deg=15,
        scale=0.1,
        shift=0.08,
        speckle=0.0,
        blur_prob=0.0,
        gain=(1, 1),
        contrast=(1, 1),
        gamma=(1, 1),
    )
    moved_any = False
    for _ in range(10):
        out, pts = augment(img, xy, rng, quiet)
        assert out.dtype == np.float32 and out.shape == img.shape
        assert np.isnan(pts[1]).all()
        peak = np.array([(out.sum(0) * np.arange(64)).sum(), (out.sum(1) * np.arange(64)).sum()])
        peak /= out.sum()
        assert np.linalg.norm(peak - pts[0]) < 0.3
        moved_any |= np.linalg.norm(pts[0] - xy[0]) > 1
    assert moved_any


def test_augment_intensity_stays_in_range_and_changes_image():
    rng = np.random.default_rng(0)
    img = (np.random.default_rng(1).random((32, 32)) * 255).astype(np.uint8)
    out, _ = augment(img, np.zeros((1, 2)) + 16, rng)
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - img / 255.0).mean() > 0.01


def test_peaks_are_subpixel_and_confidence_orders_sharpness():
    sharp = blob((40, 50), 12.3, 30.7, 1.5)
    sharp /= sharp.sum()
    uniform = np.full((40, 50), 1.0 / 2000)
    split_ = blob((40, 50), 8.0, 10.0, 1.5) + blob((40, 50), 40.0, 30.0, 1.5)
    split_ /= split_.sum()
    xy, conf = subpixel_peaks(np.stack([sharp, uniform, split_]), radius=5)
    np.testing.assert_allclose(xy[0], [12.3, 30.7], atol=1e-3)
    assert conf[0] > 0.95 and conf[1] < 0.1 and conf[2] < 0.2
    assert ((0 <= conf) & (conf <= 1)).all()


def test_loss_pulls_expectation_to_target_and_masks_missing_labels():
    logits = torch.zeros(1, 2, 32, 32, requires_grad=True)
    target = torch.tensor([[[10.0, 22.0], [float("nan"), float("nan")]]])
    opt = torch.optim.Adam([logits], lr=0.5)
    for _ in range(150):
        loss, err = heatmap_loss(logits, target, sigma=1.5, reg_weight=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(err[0, 0]) < 0.3
    assert torch.isnan(err[0, 1])
    assert float(logits.grad[0, 1].abs().max()) == 0.0  # a missing label gets no gradient


def table(rows, source="manual", reviewed=False):
    f, lab, x, y = zip(*rows, strict=False)
    return make_table(f, lab, x, y, source=source, reviewed=reviewed)


def test_curated_points_rules():
    manual = table([(0, "a", 1, 1), (0, "b", 2, 2), (5, "a", 3, 3)])
    flow = table([(9, "b", 4, 4)], source="flow")
    reviewed = table([(7, "b", 5, 5)], source="flow", reviewed=True)
    rows, labels = curated_points(pd.concat([manual, flow, reviewed]))
    assert labels == ["a", "b"] and sorted(rows["frame"].unique()) == [0, 5, 7]
    with pytest.raises(DustrackError, match="at least 2 are needed"):
        curated_points(table([(0, "a", 1, 1), (0, "b", 2, 2)]))
    with pytest.raises(DustrackError, match="'c' have no manual or reviewed example"):
        curated_points(manual, labels=["a", "b", "c"])
    with pytest.raises(DustrackError, match="no manual or reviewed"):
        curated_points(flow)
    with pytest.raises(DustrackError, match="video has 3 frames"):
        curated_points(manual, n_frames=3)


def test_training_set_keeps_partial_frames_with_nan():
    frames = np.zeros((10, 64, 96), np.uint8)
    t = table([(2, "a", 10, 20), (2, "b", 30, 40), (6, "a", 50, 60)])
    ts = build_training_set(frames, t, (32, 48))
    assert ts.frames.tolist() == [2, 6] and ts.images.shape == (2, 32, 48)
    assert np.isnan(ts.xy[1, 1]).all()
    np.testing.assert_allclose(to_full(ts.xy[0, 0], ts.full_shape, ts.size), [10, 20])


def test_split_spreads_validation_and_never_empties_training():
    train, val = split(30, 0.15, np.random.default_rng(0))
    assert len(val) >= 3 and len(np.intersect1d(train, val)) == 0
    assert len(train) + len(val) == 30 and np.ptp(val) > 10
    train, val = split(3, 0.15, np.random.default_rng(0))
    assert train.tolist() == val.tolist() == [0, 1, 2]


def test_working_size_must_fit_the_video():
    assert HeatmapConfig(scale=0.5).working_size_for((256, 200)) == (128, 96)
    with pytest.raises(DustrackError, match="smaller than the model's working size"):
        HeatmapConfig(working_size=(128, 128)).working_size_for((100, 300))
    with pytest.raises(DustrackError, match="multiples of 32"):
        HeatmapConfig(working_size=(100, 128))


def tiny_meta(labels, arch):
    return {
        "labels": labels,
        "working_size": [32, 32],
        "source_size": [64, 64],
        "normalisation": {"mean": 0.3, "std": 0.2},
        "architecture": arch,
        "training_frames": [0, 1],
        "iteration": 1,
        "metrics": {},
    }


@pytest.fixture
def saved(tmp_path):
    arch = architecture(HeatmapConfig(), 2)
    net = build_model(arch)
    folder = tmp_path / "model"
    save_model(folder, net.state_dict(), tiny_meta(["a", "b"], arch))
    return folder, net


def test_store_round_trip(saved):
    folder, net = saved
    loaded = load_model(folder, labels=["a", "b"])
    assert loaded.labels == ["a", "b"] and loaded.working_size == (32, 32)
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["model.json", read_meta(folder)["weights"]]
    )


def test_store_rejects_wrong_labels_and_corrupt_weights(saved):
    folder, _ = saved
    with pytest.raises(DustrackError, match=r"labels \['a', 'b'\] do not match \['b', 'a'\]"):
        load_model(folder, labels=["b", "a"])
    weights = folder / read_meta(folder)["weights"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DustrackError, match="corrupt"):
        load_model(folder)
    # Garbage with a matching checksum is still refused by the safetensors parser.
    weights.write_bytes(b"not a safetensors file")
    meta = json.loads((folder / "model.json").read_text())
    import hashlib

    meta["sha256"] = hashlib.sha256(b"not a safetensors file").hexdigest()
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DustrackError, match="corrupt"):
        load_model(folder)


def test_store_rejects_weights_that_do_not_fit_the_description(tmp_path):
    arch3 = architecture(HeatmapConfig(), 3)
    folder = tmp_path / "m"
    save_model(folder, build_model(arch3).state_dict(), tiny_meta(["a", "b", "c"], arch3))
    meta = json.loads((folder / "model.json").read_text())
    meta["labels"], meta["architecture"]["classes"] = ["a", "b"], 2
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DustrackError, match="do not match the architecture"):
        load_model(folder)
    meta["labels"] = ["a"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(DustrackError, match="1 labels but the network has 2 output channels"):
        read_meta(folder)


def test_failed_save_leaves_old_model_and_no_debris(saved):
    folder, net = saved
    before = sorted(p.name for p in folder.iterdir())
    bad = dict(net.state_dict(), extra="not a tensor")
    with pytest.raises(AttributeError):  # a str has no .detach()
        save_model(
            folder, bad, tiny_meta(["a", "b"], architecture(HeatmapConfig(), 2)) | {"iteration": 2}
        )
    assert sorted(p.name for p in folder.iterdir()) == before
    load_model(folder)  # still the old, complete model


def test_new_model_folder_that_fails_is_not_a_model(tmp_path):
    folder = tmp_path / "new"
    with pytest.raises(AttributeError):
        save_model(
            folder, {"w": "not a tensor"}, tiny_meta(["a"], architecture(HeatmapConfig(), 1))
        )
    assert not (folder / "model.json").exists() and list(folder.iterdir()) == []
    with pytest.raises(DustrackError, match="not a model folder"):
        read_meta(folder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DustrackError, match="not empty and holds no model"):
        save_model(other, {}, tiny_meta(["a"], architecture(HeatmapConfig(), 1)))
