"""The npe2 reader in a real napari viewer: cines as lazy layers, point tables, bad files."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
from napari.layers import Points

from napari_dustrack._napari.reader import get_reader
from napari_dustrack.io.table import make_table, write_points_csv

pytestmark = pytest.mark.gui

_spec = importlib.util.spec_from_file_location(
    "dustrack_test_media", Path(__file__).resolve().parents[1] / "io" / "media.py"
)
media = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(media)


@pytest.fixture(scope="module")
def frames():
    return media.make_frames(20)


def _open(viewer, path):
    return viewer.open(str(path), plugin="napari-dustrack")


def _errors():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [
        str(n.message)
        for n in notification_manager.records
        if n.severity == NotificationSeverity.ERROR
    ]


def test_mp4_opens_as_lazy_layer(make_napari_viewer, tmp_path, frames):
    path = media.write_video(tmp_path / "heart.mp4", frames, fps=30, gop=10)
    viewer = make_napari_viewer()
    layers = _open(viewer, path)
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "heart" and isinstance(layer.data, da.Array)
    assert layer.data.shape == frames.shape and layer.data.chunksize[0] == 1
    assert np.allclose(layer.scale, (1 / 30, 1, 1))  # seconds; data stay in frames
    assert 0 <= layer.contrast_limits[0] < layer.contrast_limits[1] <= 255
    meta = dict(layer.metadata["dustrack"])
    assert meta.pop("region")["source"] in ("full", "motion")
    assert meta == {
        "path": str(path),
        "fps": 30.0,
        "pixel_spacing": None,
        "n_frames": 20,
        "kind": "video",
    }
    viewer.dims.set_current_step(0, 13)
    reference = media.decode_all(path)
    np.testing.assert_array_equal(np.asarray(layer._slice.image.view), reference[13])


def test_dicom_opens_with_physical_scale(make_napari_viewer, tmp_path, frames):
    path = media.write_dicom(
        tmp_path / "us.dcm", frames, frame_time_ms=20.0, region_cm=(0.015, 0.025)
    )
    viewer = make_napari_viewer()
    layer = _open(viewer, path)[0]
    assert isinstance(layer.data, da.Array)
    assert np.allclose(layer.scale, (0.02, 0.25, 0.15))
    meta = layer.metadata["dustrack"]
    assert meta["fps"] == pytest.approx(50.0) and meta["kind"] == "dicom"
    assert meta["pixel_spacing"] == pytest.approx((0.25, 0.15))


def test_tiff_and_png_folder_open(make_napari_viewer, tmp_path, frames):
    tifffile.imwrite(tmp_path / "stack.tif", frames)
    folder = media.write_png_folder(tmp_path / "frames", frames[:6])
    viewer = make_napari_viewer()
    tif = _open(viewer, tmp_path / "stack.tif")[0]
    assert isinstance(tif.data, da.Array) and tif.data.shape == frames.shape
    assert tif.metadata["dustrack"]["kind"] == "tiff"
    pngs = _open(viewer, folder)[0]
    assert pngs.data.shape == (6, *frames.shape[1:]) and pngs.name == "frames"
    np.testing.assert_array_equal(np.asarray(pngs.data[4]), frames[4])


def test_point_table_opens_as_points(make_napari_viewer, tmp_path):
    table = make_table([0, 1, 1], ["apex", "apex", "base"], [10.0, 11.0, 30.0], [20.0, 21.0, 40.0])
    write_points_csv(table, tmp_path / "pts.csv")
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "pts.csv")[0]
    assert isinstance(layer, Points)
    np.testing.assert_allclose(layer.data, [[0, 20, 10], [1, 21, 11], [1, 40, 30]])
    assert list(layer.features["label"]) == ["apex", "apex", "base"]
    assert {"source", "confidence", "reviewed"} <= set(layer.features.columns)


def test_non_point_files_are_left_to_other_readers(tmp_path):
    (tmp_path / "other.csv").write_text("time,value\n0,1\n")
    (tmp_path / "config.json").write_text('{"lr": 0.001, "epochs": 3}')
    (tmp_path / "notes.h5").write_text("not hdf5")
    for name in ("other.csv", "config.json", "notes.h5"):
        assert get_reader(str(tmp_path / name)) is None, name
    assert get_reader(str(tmp_path / "x.unknown")) is None


@pytest.mark.parametrize("kind", ["text", "truncated", "zero", "dicom", "csv"])
def test_bad_files_give_one_line_notification(make_napari_viewer, tmp_path, frames, kind):
    if kind == "text":
        path = tmp_path / "bad.mp4"
        path.write_text("not a video")
    elif kind == "truncated":
        path = media.write_video(tmp_path / "cut.mp4", frames)
        path.write_bytes(path.read_bytes()[:3000])
    elif kind == "zero":
        path = media.write_empty_video(tmp_path / "zero.mp4")
    elif kind == "dicom":
        path = media.write_dicom_jpegls_stub(tmp_path / "jls.dcm")
        from pydicom.pixels import get_decoder
        from pydicom.uid import JPEGLSLossless

        if get_decoder(JPEGLSLossless).is_available:
            pytest.skip("a JPEG-LS decoder is installed here")
    else:
        path = tmp_path / "dup.csv"
        path.write_text("frame,label,x,y\n0,apex,1,2\n0,apex,3,4\n")
    viewer = make_napari_viewer()
    before = len(_errors())
    layers = _open(viewer, path)
    assert layers == [] and len(viewer.layers) == 0
    new = _errors()[before:]
    assert len(new) == 1
    assert new[0].startswith(str(path)) and "\n" not in new[0]


def test_interop_tiny_cine(make_napari_viewer, interop, tmp_path):
    path = Path(shutil.copy(interop / "tiny_cine.mp4", tmp_path / "tiny_cine.mp4"))
    viewer = make_napari_viewer()
    layer = _open(viewer, path)[0]
    assert layer.data.shape[0] == 30 and layer.metadata["dustrack"]["n_frames"] == 30
    reference = media.decode_all(path)
    for i in np.random.default_rng(7).permutation(30):  # random access == sequential, every frame
        np.testing.assert_array_equal(np.asarray(layer.data[int(i)]), reference[i])
