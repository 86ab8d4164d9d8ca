"""Multi-frame DICOM: frames, frame rate, pixel spacing, compression, bad files."""

from __future__ import annotations

import media
import numpy as np
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.dicom import DicomCine


@pytest.fixture
def frames():
    return media.make_frames(12)


def test_uncompressed_us_cine_is_memory_mapped(tmp_path, frames):
    path = media.write_dicom(
        tmp_path / "us.dcm", frames, frame_time_ms=40.0, region_cm=(0.02, 0.03)
    )
    cine = DicomCine(path)
    assert cine.shape == frames.shape and len(cine) == 12
    assert isinstance(cine._mm, np.memmap)  # lazy: frames stay on disk
    for i in (11, 0, 5):
        np.testing.assert_array_equal(cine.read(i), frames[i])
    assert cine.fps == pytest.approx(25.0)  # 1000 / 40 ms
    assert cine.pixel_spacing == pytest.approx((0.3, 0.2))  # (dy, dx): cm -> mm
    assert cine.kind == "dicom"


def test_cine_rate_and_pixel_spacing_without_regions(tmp_path, frames):
    path = media.write_dicom(
        tmp_path / "ps.dcm",
        frames,
        frame_time_ms=None,
        cine_rate=30,
        region_cm=None,
        pixel_spacing_mm=(0.15, 0.25),
    )
    cine = DicomCine(path)
    assert cine.fps == pytest.approx(30.0)
    assert cine.pixel_spacing == pytest.approx((0.15, 0.25))


def test_no_timing_or_spacing_gives_none(tmp_path, frames):
    path = media.write_dicom(tmp_path / "bare.dcm", frames, frame_time_ms=None, region_cm=None)
    cine = DicomCine(path)
    assert cine.fps is None and cine.pixel_spacing is None


def test_rgb_cine_to_gray_and_kept_in_colour(tmp_path, frames):
    rgb = np.stack([frames, 255 - frames, frames // 2], axis=-1)
    path = media.write_dicom(tmp_path / "rgb.dcm", rgb)
    gray = DicomCine(path)
    assert gray.shape == frames.shape
    luma = rgb[4].astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.abs(gray.read(4) - luma).max() <= 1.0
    colour = DicomCine(path, rgb=True)
    assert colour.shape == rgb.shape
    np.testing.assert_array_equal(colour.read(4), rgb[4])


def test_sixteen_bit_and_monochrome1_become_uint8(tmp_path, frames):
    path = media.write_dicom(tmp_path / "u16.dcm", frames.astype(np.uint16) * 16 + 100)
    cine = DicomCine(path)
    frame = cine.read(3)
    assert frame.dtype == np.uint8
    assert np.corrcoef(frame.ravel(), frames[3].ravel())[0, 1] > 0.999
    inverted = DicomCine(media.write_dicom(tmp_path / "m1.dcm", frames, photometric="MONOCHROME1"))
    np.testing.assert_array_equal(inverted.read(3), 255 - frames[3])


def test_rle_lossless_is_decoded_exactly(tmp_path, frames):
    cine = DicomCine(media.write_dicom_rle(tmp_path / "rle.dcm", frames))
    assert cine.shape == frames.shape
    for i in (9, 2):
        np.testing.assert_array_equal(cine.read(i), frames[i])
    assert cine.fps == pytest.approx(50.0) and cine.pixel_spacing == pytest.approx((0.25, 0.5))


def test_jpeg_baseline_ultrasound_export(tmp_path, frames):
    cine = DicomCine(media.write_dicom_jpeg(tmp_path / "jpeg.dcm", frames))
    assert cine.shape == frames.shape
    for i in (0, 7, 11):  # lossy: close to the frame, far from its neighbours
        errors = np.abs(frames.astype(int) - cine.read(i)).mean(axis=(1, 2))
        assert int(np.argmin(errors)) == i and errors[i] < 3
    assert cine.fps == pytest.approx(50.0) and cine.pixel_spacing == pytest.approx((0.1, 0.1))


def test_compression_without_decoder_is_refused_clearly(tmp_path):
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    path = media.write_dicom_jpegls_stub(tmp_path / "jls.dcm")
    with pytest.raises(DustrackError) as info:
        DicomCine(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "JPEG-LS" in message and "install" in message
    assert "\n" not in message


def test_not_dicom(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"plain text, no DICOM here" * 10)
    with pytest.raises(DustrackError, match="not a DICOM file"):
        DicomCine(path)


def test_dicom_without_pixels(tmp_path, frames):
    import pydicom

    path = media.write_dicom(tmp_path / "sr.dcm", frames)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(DustrackError, match="no image data"):
        DicomCine(path)


def test_truncated_dicom(tmp_path):
    big = media.make_frames(20, 128, 128)
    path = media.write_dicom(tmp_path / "cut.dcm", big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DustrackError) as info:
        DicomCine(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
