"""TIFF stacks and image folders."""

from __future__ import annotations

import media
import numpy as np
import pytest
import tifffile

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.stack import ImageFolder, TiffStack, image_files, natural_key


@pytest.fixture
def frames():
    return media.make_frames(12)


def test_uncompressed_tiff_is_memory_mapped(tmp_path, frames):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, frames)
    stack = TiffStack(path)
    assert stack.shape == frames.shape and stack.kind == "tiff"
    assert isinstance(stack._mm, np.memmap)
    for i in (11, 0, 6):
        np.testing.assert_array_equal(stack.read(i), frames[i])
    stack.close()


def test_compressed_tiff_read_page_by_page(tmp_path, frames):
    path = tmp_path / "zip.tif"
    tifffile.imwrite(path, frames, compression="zlib")
    stack = TiffStack(path)
    assert stack._mm is None and stack.shape == frames.shape
    np.testing.assert_array_equal(stack.read(7), frames[7])


def test_imagej_units_give_fps_and_spacing(tmp_path, frames):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        frames,
        imagej=True,
        resolution=(1 / 0.2, 1 / 0.1),
        metadata={"axes": "TYX", "unit": "mm", "finterval": 0.04},
    )
    stack = TiffStack(path)
    assert stack.fps == pytest.approx(25.0)
    assert stack.pixel_spacing == pytest.approx((0.1, 0.2))  # (dy, dx) from y/x resolution


def test_sixteen_bit_rgb_and_single_image(tmp_path, frames):
    tifffile.imwrite(tmp_path / "u16.tif", frames.astype(np.uint16) * 200)
    stack = TiffStack(tmp_path / "u16.tif")
    assert stack.read(2).dtype == np.uint8
    assert np.corrcoef(stack.read(2).ravel(), frames[2].ravel())[0, 1] > 0.999
    rgb = np.stack([frames, frames // 2, 255 - frames], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert TiffStack(tmp_path / "rgb.tif").shape == frames.shape
    colour = TiffStack(tmp_path / "rgb.tif", rgb=True)
    assert colour.shape == rgb.shape
    np.testing.assert_array_equal(colour.read(5), rgb[5])
    tifffile.imwrite(tmp_path / "one.tif", frames[0])
    one = TiffStack(tmp_path / "one.tif")
    assert one.shape == (1, *frames.shape[1:])
    np.testing.assert_array_equal(one.read(0), frames[0])


def test_not_a_tiff(tmp_path):
    path = tmp_path / "fake.tif"
    path.write_text("not an image")
    with pytest.raises(DustrackError, match="not a readable TIFF") as info:
        TiffStack(path)
    assert str(path) in str(info.value)


def test_png_folder_in_natural_order(tmp_path, frames):
    folder = media.write_png_folder(tmp_path / "pngs", frames)  # img0 ... img11, not padded
    (folder / "notes.txt").write_text("ignored")
    assert [p.name for p in image_files(folder)][:3] == ["img0.png", "img1.png", "img2.png"]
    assert image_files(folder)[-1].name == "img11.png"
    stack = ImageFolder(folder)
    assert stack.shape == frames.shape and stack.kind == "images"
    for i in (10, 2, 11):
        np.testing.assert_array_equal(stack.read(i), frames[i])
    assert natural_key("img2.png") < natural_key("img10.png")


def test_jpeg_folder_rgb(tmp_path, frames):
    rgb = np.stack([frames, frames, frames], axis=-1)
    folder = media.write_png_folder(tmp_path / "jpgs", rgb, pattern="frame_{:03d}.jpg")
    stack = ImageFolder(folder, rgb=True)
    assert stack.shape == rgb.shape
    assert np.abs(stack.read(4).astype(int) - rgb[4]).mean() < 4


def test_folder_with_a_wrong_sized_frame(tmp_path, frames):
    folder = media.write_png_folder(tmp_path / "mixed", frames[:5])
    media.write_png_folder(folder, np.zeros((1, 10, 10), np.uint8), pattern="img9{}.png")
    stack = ImageFolder(folder)  # shown fitted to the first frame's size, with a note
    assert len(stack.notes) == 1 and "img90.png" in stack.notes[0]
    assert "differs from the first frame" in stack.notes[0]
    assert stack.read(5).shape == frames.shape[1:] and not stack.read(5)[10:].any()


def test_folder_with_a_broken_image_and_an_empty_folder(tmp_path, frames):
    folder = media.write_png_folder(tmp_path / "broken", frames[:3])
    (folder / "img3.png").write_bytes(b"\x89PNG garbage")
    stack = ImageFolder(folder)
    with pytest.raises(DustrackError, match="not a readable image") as info:
        stack.read(3)
    assert "img3.png" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DustrackError, match="no PNG/JPEG frames"):
        ImageFolder(tmp_path / "empty")
