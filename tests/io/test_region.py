"""The ultrasound image region: DICOM regions, still-border detection, crop for the model,
mask for the export; coordinates stay in the full frame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_dustrack.io.cine import open_cine
from napari_dustrack.io.region import (
    Region,
    crop_for_training,
    crop_frames,
    detect_region,
    mask_frames,
    pick_dicom_region,
)
from napari_dustrack.io.table import make_table

_spec = importlib.util.spec_from_file_location(
    "dustrack_test_media", Path(__file__).resolve().parent / "media.py"
)
media = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(media)


def item(box, spatial=1, data_type=1):
    y0, x0, y1, x1 = box
    region = media.us_region(0.02, 0.02, 10, 10)
    region.RegionSpatialFormat, region.RegionDataType = spatial, data_type
    region.RegionLocationMinX0, region.RegionLocationMinY0 = x0, y0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = x1 - 1, y1 - 1
    return region


def test_the_2d_tissue_region_is_chosen_and_the_others_are_named():
    colour_flow = item((10, 10, 40, 40), data_type=2)
    tissue = item((5, 5, 60, 90))
    mmode = item((60, 0, 100, 120), spatial=2, data_type=4)
    chosen, notes = pick_dicom_region([colour_flow, mmode, tissue], (100, 120))
    assert chosen is tissue
    assert len(notes) == 1 and "M-mode" in notes[0]


def test_regions_that_do_not_fit_are_refused():
    chosen, notes = pick_dicom_region([item((0, 0, 120, 50))], (100, 120))
    assert chosen is None
    assert "does not fit" in notes[0] and "whole frame" in notes[-1]
    assert pick_dicom_region([], (100, 120)) == (None, [])


def test_still_border_is_found_and_a_moving_cine_is_left_whole():
    rng = np.random.default_rng(0)
    frames = np.zeros((10, 80, 100), np.uint8)
    frames[:, 10:70, 20:90] = rng.integers(0, 255, (10, 60, 70))
    frames[:, 0:6, 0:50] = 255  # text
    region, note = detect_region(frames)
    assert region == Region(10, 20, 70, 90, "motion") and note is None
    region, note = detect_region(rng.integers(0, 255, (10, 80, 100)).astype(np.uint8))
    assert region.source == "full" and note is None
    assert detect_region(frames[:2])[0].source == "full"  # too few frames to tell


def test_crop_for_training_and_back():
    frames = np.arange(2 * 6 * 8, dtype=np.uint8).reshape(2, 6, 8)

    class Framed(np.ndarray):
        region = Region(1, 2, 5, 7, "dicom")
        frame_shape = (6, 8)

    framed = frames.view(Framed)
    table = make_table([0, 0, 1], ["a", "b", "a"], [3.0, 0.0, 6.0], [2.0, 2.0, 4.0])
    view, moved = crop_for_training(framed, table)
    np.testing.assert_array_equal(view[1], frames[1, 1:5, 2:7])
    assert list(moved["label"]) == ["a", "a"]  # b lies outside the region
    np.testing.assert_allclose(moved[["x", "y"]], [[1.0, 1.0], [4.0, 3.0]])
    _, offset = crop_frames(framed)
    np.testing.assert_allclose(offset, (2, 1))
    masked = mask_frames(framed)[0]
    assert not masked[0].any() and not masked[:, :2].any()
    np.testing.assert_array_equal(masked[1:5, 2:7], frames[0, 1:5, 2:7])
    plain, offset = crop_frames(frames)  # no region: untouched
    assert plain is frames and not offset.any()


@pytest.fixture(scope="module")
def screen_cine(tmp_path_factory):
    """A simulated cardiac cine inside a scanner screen (text and panel around it), as DICOM
    with its 2-D region."""
    import pydicom

    from napari_dustrack.simulate import simulate

    sim = simulate("cardiac", n_frames=24, shape=(96, 96), seed=1)
    screen = np.zeros((24, 128, 160), np.uint8)
    screen[:, 20:116, 48:144] = sim.frames
    screen[:, 4:12, 4:100] = 220  # patient name
    screen[:, 20:120, 4:40] = 90  # side panel
    path = tmp_path_factory.mktemp("screen") / "screen.dcm"
    media.write_dicom(path, screen, frame_time_ms=20.0, region_cm=None)
    ds = pydicom.dcmread(str(path))
    ds.SequenceOfUltrasoundRegions = [item((20, 48, 116, 144))]
    ds.save_as(str(path), enforce_file_format=True)
    truth = sim.truth.copy()
    truth["x"] += 48
    truth["y"] += 20
    return path, truth


def test_cine_exposes_the_region_and_keeps_it_in_a_worker(screen_cine):
    import pickle

    path, _ = screen_cine
    cine = open_cine(path, fill_cache=False)
    assert cine.region == Region(20, 48, 116, 144, "dicom")
    again = pickle.loads(pickle.dumps(cine))
    assert again.region == cine.region and again.shape == cine.shape
    assert cine.metadata(region=True)["region"]["x0"] == 48
    assert open_cine(path, fill_cache=False, region=False).region.source == "dicom"


def test_mp4_export_blacks_out_the_screen_around_the_region(screen_cine, tmp_path):
    from napari_dustrack.io.export import export_mp4

    path, truth = screen_cine
    cine = open_cine(path, fill_cache=False)
    out = export_mp4(cine, truth[truth["frame"] < 4], tmp_path / "out.mp4", fps=50, scale=1, tail=0)
    first = media.decode_all(out, fmt="rgb24")[1]
    assert first[20:120, 4:40].max() < 20  # the side panel is gone
    assert first[30:110, 60:140].mean() > 10  # the image is there


@pytest.mark.slow
def test_model_trains_on_the_region_and_predicts_in_full_frame(screen_cine, tmp_path):
    pytest.importorskip("torch")
    from napari_dustrack.io.table import to_array
    from napari_dustrack.tracking.heatmap import HeatmapConfig
    from napari_dustrack.tracking.heatmap.predict import predict_video
    from napari_dustrack.tracking.heatmap.train import train

    path, truth = screen_cine
    cine = open_cine(path, fill_cache=False)
    labels = ["anterior_endo", "septal"]
    truth = truth[truth["label"].isin(labels)].reset_index(drop=True)
    truth["source"] = "manual"
    meta = train(
        cine,
        truth[truth["frame"] % 3 == 0],
        tmp_path / "model",
        HeatmapConfig(scale=0.5, minutes=5.0, max_epochs=8, seed=0),
    )
    assert meta["source_size"] == [96, 96]  # the screen around the image was never seen
    pred = predict_video(cine, tmp_path / "model")
    p, _ = to_array(pred, labels, 24)
    g, _ = to_array(truth, labels, 24)
    err = np.linalg.norm(p - g, axis=-1)
    # full-frame coordinates: without the offset added back every point would be ~52 px off;
    # a short training is within a few pixels
    assert np.median(err) < 15.0, np.median(err)


def _screen_video(path, box, seed=0, n=24):
    """A screen capture: changing speckle inside ``box``, still text around it."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, 96, 128), np.uint8)
    y0, x0, y1, x1 = box
    frames[:, y0:y1, x0:x1] = rng.integers(20, 230, (n, y1 - y0, x1 - x0))
    frames[:, 2:10, 4:60] = 200  # burned-in text
    return media.write_video(path, frames, fps=25, gop=8)


def _near(region, box):
    return np.abs(np.subtract((region.y0, region.x0, region.y1, region.x1), box)).max() <= 2


def test_the_region_found_once_is_kept_in_the_sidecar_until_the_video_changes(tmp_path):
    import json
    import os

    from napari_dustrack.io.cine import open_frames
    from napari_dustrack.io.sidecar import view_path

    path = _screen_video(tmp_path / "screen.mp4", (16, 24, 80, 112))
    with open_cine(path, fill_cache=False) as cine:  # a one-pass read remembers nothing
        assert _near(cine.region, (16, 24, 80, 112))
    assert not view_path(path).exists()
    with open_cine(path) as cine:  # a viewer's open does
        found = cine.region
    saved = json.loads(view_path(path).read_text(encoding="utf-8"))
    assert Region.from_dict(saved["region"]) == found and found.source == "motion"

    # the next open reads it back instead of looking at frames: plant another rectangle
    saved["region"] = {"y0": 1, "x0": 2, "y1": 50, "x1": 60, "source": "motion", "note": None}
    view_path(path).write_text(json.dumps(saved), encoding="utf-8")
    with open_cine(path) as cine:
        assert cine.region == Region(1, 2, 50, 60, "motion")
    with open_frames(path) as cine:  # algorithms and workers read it too
        assert cine.region == Region(1, 2, 50, 60, "motion")

    # a re-encoded video (other content, other size or time) is looked at afresh
    _screen_video(path, (30, 10, 90, 100), seed=1)
    os.utime(path, ns=(saved["stamp"]["mtime_ns"] + 10**9,) * 2)
    with open_cine(path) as cine:
        assert _near(cine.region, (30, 10, 90, 100)), cine.region
    saved = json.loads(view_path(path).read_text(encoding="utf-8"))
    assert Region.from_dict(saved["region"]) == cine.region


def test_an_unwritable_or_damaged_view_record_only_costs_a_new_look(tmp_path):
    from napari_dustrack.io.sidecar import read_view, update_view, view_path

    path = _screen_video(tmp_path / "screen.mp4", (16, 24, 80, 112))
    view_path(path).parent.mkdir()
    view_path(path).write_text("{not json", encoding="utf-8")
    assert read_view(path) == {}
    with open_cine(path) as cine:
        assert _near(cine.region, (16, 24, 80, 112))
    assert read_view(path)["region"]["source"] == "motion"
    other = _screen_video(tmp_path / "other.mp4", (16, 24, 80, 112))
    view_path(other).parent.write_text("a file where the sidecar folder would be")
    update_view(other, contrast=[1.0, 2.0])  # cannot be written: silently nothing
    assert read_view(other) == {}
    with open_cine(other, fill_cache=True) as cine:
        assert _near(cine.region, (16, 24, 80, 112))
