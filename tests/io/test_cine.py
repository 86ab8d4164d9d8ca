"""open_cine: dispatch by content, the lazy dask array, the background frame cache."""

from __future__ import annotations

import os
import pickle
import shutil
import threading

import dask.array as da
import media
import numpy as np
import pytest
import tifffile

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.cine import Cine, open_cine
from napari_dustrack.io.framecache import FrameCache, cache_shape
from napari_dustrack.io.sidecar import sidecar_dir


@pytest.fixture
def video(tmp_path, frames):
    """A private copy per test: the frame cache writes next to it."""
    path = tmp_path / "clip.mp4"
    media.write_video(path, frames, fps=25, gop=10)
    return path


def test_dispatch_by_type_and_content(tmp_path, frames, h264_mp4):
    dcm = media.write_dicom(tmp_path / "us.dcm", frames)
    shutil.copy(dcm, tmp_path / "IM_0001")  # DICOM exports often have no extension
    tifffile.imwrite(tmp_path / "s.tif", frames)
    folder = media.write_png_folder(tmp_path / "pngs", frames[:5])
    mkv_copy = shutil.copy(h264_mp4, tmp_path / "renamed.bin")  # content decides, not name
    kinds = {
        "dicom": open_cine(tmp_path / "IM_0001", fill_cache=False),
        "tiff": open_cine(tmp_path / "s.tif"),
        "images": open_cine(folder),
        "video": open_cine(mkv_copy, fill_cache=False),
    }
    for kind, cine in kinds.items():
        assert isinstance(cine, Cine) and cine.kind == kind
        assert cine.dtype == np.uint8 and cine[0].shape == frames.shape[1:]
        np.testing.assert_array_equal(np.asarray(cine.data[0]), cine[0])
        cine.close()
    assert kinds["dicom"].pixel_spacing == pytest.approx((0.3, 0.2))


def test_bad_paths(tmp_path):
    with pytest.raises(DustrackError, match="file not found"):
        open_cine(tmp_path / "nope.mp4")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DustrackError, match="no PNG/JPEG frames"):
        open_cine(tmp_path / "empty_dir")
    (tmp_path / "data.xyz").write_text("1,2,3")
    with pytest.raises(DustrackError, match="not a readable video"):
        open_cine(tmp_path / "data.xyz")


def test_data_is_lazy_dask(h264_mp4, frames):
    cine = open_cine(h264_mp4, fill_cache=False)
    assert cine.shape == frames.shape and len(cine) == 30 and cine.fps == pytest.approx(25)
    data = cine.data
    assert isinstance(data, da.Array) and data.shape == frames.shape and data.dtype == np.uint8
    assert data.chunksize == (1, *frames.shape[1:])
    view = data[17, 5:20]
    assert cine._source.position == 0  # building/slicing the graph decoded nothing
    np.testing.assert_array_equal(view.compute(), media.decode_all(h264_mp4)[17, 5:20])
    assert cine._source.position == 17
    np.testing.assert_array_equal(cine[3:6], data[3:6].compute())
    np.testing.assert_array_equal(cine[[8, 2]], np.stack([cine[8], cine[2]]))
    assert cine.metadata() == {
        "path": str(h264_mp4),
        "fps": 25.0,
        "pixel_spacing": None,
        "n_frames": 30,
        "kind": "video",
    }


def test_pickled_cine_reopens(h264_mp4):
    cine = open_cine(h264_mp4, fill_cache=False)
    clone = pickle.loads(pickle.dumps(cine))
    np.testing.assert_array_equal(clone[12], cine[12])
    data = pickle.loads(pickle.dumps(cine.data))  # what dask ships to worker processes
    np.testing.assert_array_equal(np.asarray(data[12]), cine[12])


def test_rgb_cine(h264_mp4):
    cine = open_cine(h264_mp4, rgb=True)
    assert cine.shape == (30, 64, 96, 3) and cine.frame_cache is None  # cache is gray only
    assert np.asarray(cine.data[4]).shape == (64, 96, 3)


def test_frame_cache_fills_in_background_and_serves_frames(video):
    reference = media.decode_all(video)
    cine = open_cine(video)
    cache = cine.frame_cache
    assert cache is not None and cache.path.parent == sidecar_dir(video)
    assert cache.path.name == "frames-64x96.u8" and cache.full_res
    assert cache.wait(timeout=60) and cache.error is None
    mm = np.memmap(cache.path, dtype=np.uint8, mode="r", shape=reference.shape)
    np.testing.assert_array_equal(mm, reference)  # a plain memmap reads it
    for i in np.random.default_rng(0).permutation(30):
        np.testing.assert_array_equal(np.asarray(cine.data[int(i)]), reference[i])
        np.testing.assert_array_equal(cine[int(i)], reference[i])
    cine.close()
    again = open_cine(video)  # complete cache found again: nothing to fill
    assert again.frame_cache.complete and again.frame_cache._thread is None
    again.close()


def test_stale_frame_cache_is_rebuilt(video, frames):
    cine = open_cine(video)
    assert cine.frame_cache.wait(60)
    cine.close()
    media.write_video(video, frames[::-1].copy(), fps=25, gop=10)  # same name, new content
    os.utime(video, ns=(1, 1))
    cine = open_cine(video)
    assert not cine.frame_cache.complete or cine.frame_cache._thread is not None
    assert cine.frame_cache.wait(60)
    np.testing.assert_array_equal(np.asarray(cine.data[0]), media.decode_all(video)[0])
    cine.close()


def test_reader_without_fill_uses_an_existing_cache(video, frames):
    reference = media.decode_all(video)
    filler = open_cine(video)  # as napari does when the video is opened
    assert filler.frame_cache.wait(60)
    filler.close()
    cine = open_cine(video, fill_cache=False)  # as the smoother, the CLI and workers do
    assert cine.frame_cache is not None and cine.frame_cache.full_res
    decoded = []
    real_read = cine._source.read
    cine._source.read = lambda i: decoded.append(i) or real_read(i)
    for i in (0, 17, 29, 5):
        np.testing.assert_array_equal(cine[i], reference[i])
    assert decoded == []  # every frame came from the cache
    cine.close()
    media.write_video(video, frames[::-1].copy(), fps=25, gop=10)  # the video changed:
    os.utime(video, ns=(1, 1))
    cine = open_cine(video, fill_cache=False)
    assert cine.frame_cache is None  # the stale cache is ignored
    np.testing.assert_array_equal(cine[0], media.decode_all(video)[0])
    cine.close()


def test_reduced_frame_cache_serves_display_only(video):
    reference = media.decode_all(video)
    budget = 30 * 32 * 48  # a quarter of the full size
    cine = open_cine(video, cache_max_bytes=budget)
    cache = cine.frame_cache
    assert cache.frame_shape == cache_shape(30, (64, 96), budget) == (32, 48)
    assert not cache.full_res and cache.wait(60)
    shown = np.asarray(cine.data[20])
    assert shown.shape == (64, 96)  # upsampled for napari
    assert np.abs(shown.astype(int) - reference[20]).mean() < 25
    np.testing.assert_array_equal(cine[20], reference[20])  # algorithms get exact frames
    cine.close()


def test_partial_cache_resumes_and_request_prioritises(video):
    reference = media.decode_all(video)
    from napari_dustrack.io.video import VideoReader

    def make_reader(size):
        return VideoReader(video, cache_bytes=0, output_size=size)

    cache = FrameCache(video, 30, (64, 96), make_reader, start=False)
    cache.request(25, 20, 30)  # the user looks at frame 25: fill its keyframe interval first
    assert cache._next_target() == 20
    cache.start()
    for _ in range(400):
        if cache.n_filled >= 3:
            break
        threading.Event().wait(0.01)
    cache.close()  # stop early: progress is saved
    saved = cache.filled.copy()
    assert saved[20] and 0 < saved.sum()
    resumed = FrameCache(video, 30, (64, 96), make_reader)
    assert resumed.filled[saved].all()
    assert resumed.wait(60)
    for i in (0, 20, 29):
        np.testing.assert_array_equal(resumed.get(i), reference[i])
    resumed.close()


def test_second_process_does_not_fill_the_same_cache(video):
    from napari_dustrack.io.video import VideoReader

    first = FrameCache(video, 30, (64, 96), lambda size: VideoReader(video), start=False)
    second = FrameCache(video, 30, (64, 96), lambda size: VideoReader(video), start=False)
    assert first.writer and not second.writer  # the lock file is held by the first
    first.close()
    second.close()


def test_no_cache_when_the_folder_is_read_only(tmp_path, frames):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    folder = tmp_path / "ro"
    folder.mkdir()
    path = media.write_video(folder / "clip.mp4", frames)
    folder.chmod(0o555)
    try:
        cine = open_cine(path)
        assert cine.frame_cache is None
        np.testing.assert_array_equal(cine[5], media.decode_all(path)[5])
    finally:
        folder.chmod(0o755)


def test_interop_tiny_cine_frame_accurate(interop):
    path = interop / "tiny_cine.mp4"
    reference = media.decode_all(path)
    cine = open_cine(path, fill_cache=False)  # no sidecar next to the shared file
    assert len(cine) == 30 == len(reference)
    for i in np.random.default_rng(5).permutation(30):
        np.testing.assert_array_equal(np.asarray(cine.data[int(i)]), reference[i])
    assert not sidecar_dir(path).exists()


def test_dropped_cine_stops_its_fill_thread(video):
    import gc

    cine = open_cine(video)
    cache = cine.frame_cache
    del cine
    gc.collect()
    assert cache._stop.is_set()  # the finalizer ran: nothing kept the Cine alive
    cache.wait(30)
    assert cache._fd is None  # files released by the thread (or at once if it had finished)


def test_frame_index_is_kept_for_the_next_open(video):
    from napari_dustrack.io.framecache import load_index

    first = open_cine(video)
    saved = load_index(video)
    assert saved is not None
    np.testing.assert_array_equal(saved[0], first._source.index.pts)
    np.testing.assert_array_equal(saved[1], first._source.index.keyframes)
    first.close()
    again = open_cine(video)
    reference = media.decode_all(video)
    for i in (29, 3, 14):
        np.testing.assert_array_equal(again[i], reference[i])
    again.close()
    os.utime(video, ns=(5, 5))  # the video changed: the saved index no longer applies
    assert load_index(video) is None


def test_reduced_cache_does_not_replace_cheap_exact_frames(video):
    reference = media.decode_all(video)
    cine = open_cine(video, cache_max_bytes=30 * 32 * 48)
    assert cine.frame_cache.wait(60)
    cine[10]  # the decoder now sits at frame 10
    cine._source._cache.clear()
    np.testing.assert_array_equal(np.asarray(cine.data[11]), reference[11])  # next: exact
    jumped = np.asarray(cine.data[25])  # a jump: from the reduced cache
    assert not np.array_equal(jumped, reference[25])
    cine.display_reduced = False
    np.testing.assert_array_equal(np.asarray(cine.data[3]), reference[3])
    cine.close()


@pytest.mark.parametrize("n_marked, diff", [(20, 40), (19, 40), (20, 39), (400, 255)])
def test_colour_needs_twenty_pixels_whose_channels_differ_by_forty(n_marked, diff):
    """The colour rule at its edges, on a 1080p grey frame in RGB with a few marked pixels."""
    from napari_dustrack.io.pixels import has_colour

    frame = np.full((1080, 1920, 3), 100, np.uint8)
    frame[500:501, :] = 255  # bright grey: no colour
    rows, cols = np.unravel_index(np.arange(n_marked) * 97, (1080, 1920))
    channel = np.arange(n_marked) % 3  # the odd channel differs, up or down
    frame[rows, cols, channel] = np.where(channel == 1, 100 - min(diff, 100), min(100 + diff, 255))
    spread = frame.astype(int).max(axis=-1) - frame.astype(int).min(axis=-1)
    expected = bool(np.count_nonzero(spread >= 40) >= 20)  # the rule, spelt out
    assert expected == (n_marked >= 20 and diff >= 40)
    assert has_colour(frame) is expected
    assert not has_colour(frame[..., 0]) and not has_colour(np.repeat(frame[..., :1], 3, axis=-1))
