"""Video reader: frame-accurate random access, formats, threads, bad files."""

from __future__ import annotations

import threading

import av
import media
import numpy as np
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.video import VideoReader, frame_to_array

VIDEOS = ["h264_mp4", "mjpeg_avi", "h264_mkv", "mpeg4_mov"]


@pytest.mark.parametrize("video", VIDEOS)
def test_random_access_matches_sequential_decoding(video, request, frames):
    path = request.getfixturevalue(video)
    reference = media.decode_all(path)
    reader = VideoReader(path, cache_bytes=0)  # no LRU: every read really seeks/decodes
    assert len(reader) == len(frames) == len(reference)
    assert reader.shape == reference.shape
    order = np.random.default_rng(3).permutation(len(reader))
    for i in order:
        np.testing.assert_array_equal(reader[i], reference[i], err_msg=f"{video} frame {i}")
    for i in range(len(reader) - 1, -1, -1):  # stepping backwards, the worst case for seeking
        np.testing.assert_array_equal(reader[i], reference[i], err_msg=f"{video} frame {i}")
    # and each decoded frame is closest to the frame encoded at that index (lossy codecs)
    for i in (0, 9, 10, 17, 29):
        errors = np.abs(frames.astype(int) - reader[i]).mean(axis=(1, 2))
        assert int(np.argmin(errors)) == i, (video, i)
    reader.close()


def test_h264_has_keyframe_index_and_reordered_pts(h264_mp4):
    reader = VideoReader(h264_mp4)
    np.testing.assert_array_equal(reader.index.keyframes, [0, 10, 20])
    assert np.all(np.diff(reader.index.pts) > 0)
    with av.open(str(h264_mp4)) as container:  # B-frames: decode order != display order
        packet_pts = [p.pts for p in container.demux(video=0) if p.size]
    assert packet_pts != sorted(packet_pts)
    assert reader.index.keyframe_before(15) == 10 and reader.index.keyframe_after(15) == 20


@pytest.mark.parametrize(
    "video,fps", [("h264_mp4", 25.0), ("mjpeg_avi", 30.0), ("h264_mkv", 12.5), ("mpeg4_mov", 20.0)]
)
def test_frame_rate_from_stream(video, fps, request):
    reader = VideoReader(request.getfixturevalue(video))
    assert reader.fps == pytest.approx(fps)
    assert reader.kind == "video" and reader.pixel_spacing is None


def test_next_frame_is_decoded_without_seeking(h264_mp4):
    reader = VideoReader(h264_mp4, cache_bytes=0)
    reader[3]
    assert reader.position == 3
    reader[4]  # the fast path: one more frame from the open decoder
    assert reader.position == 4
    reader[13]  # keyframe 10 lies between: seek there instead of decoding 5..12
    assert reader.position == 13


def test_lru_cache_keeps_frames_decoded_on_the_way(h264_mp4):
    reference = media.decode_all(h264_mp4)
    reader = VideoReader(h264_mp4)
    reader[18]  # decodes 10..18 after seeking to keyframe 10
    for i in range(10, 19):
        cached = reader.cached(i)
        assert cached is not None, i
        np.testing.assert_array_equal(cached, reference[i])
    assert reader.cached(25) is None


def test_rgb_frames(h264_mp4, mjpeg_avi):
    for path in (h264_mp4, mjpeg_avi):
        reference = media.decode_all(path, fmt="rgb24")
        reader = VideoReader(path, rgb=True)
        assert reader.shape == reference.shape and reader.shape[-1] == 3
        for i in (7, 2, 29):
            np.testing.assert_array_equal(reader[i], reference[i])


@pytest.mark.parametrize(
    "pix_fmt,codec",
    [
        ("yuv420p", "libx264"),
        ("yuvj420p", "mjpeg"),
        ("yuv444p", "libx264"),
        ("gray", "ffv1"),
        ("rgb24", "png"),
    ],
)
def test_fast_gray_conversion_equals_swscale(pix_fmt, codec, tmp_path, frames):
    ext = {"png": ".mov", "ffv1": ".mkv"}.get(codec, ".mkv")
    rgb = np.stack([frames[:4]] * 3, axis=-1)
    rgb[..., 0] = 255 - rgb[..., 0]  # real colour, so luma weights matter
    path = media.write_video(tmp_path / f"v{ext}", rgb, codec=codec, pix_fmt=pix_fmt, gop=2)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            np.testing.assert_array_equal(frame_to_array(frame), frame.to_ndarray(format="gray"))


def test_concurrent_reads_from_threads(h264_mp4):
    reference = media.decode_all(h264_mp4)
    reader = VideoReader(h264_mp4, cache_bytes=0)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for i in rng.integers(0, len(reader), 25):
            if not np.array_equal(reader[int(i)], reference[int(i)]):
                errors.append(int(i))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_negative_and_out_of_range_indices(h264_mp4):
    reader = VideoReader(h264_mp4)
    np.testing.assert_array_equal(reader[-1], reader[len(reader) - 1])
    with pytest.raises(IndexError):
        reader[len(reader)]


def test_pickle_reopens_by_path(h264_mp4):
    import pickle

    reader = VideoReader(h264_mp4)
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone[21], reader[21])
    clone.close()
    reader.close()
    with pytest.raises(DustrackError, match="closed"):
        reader[5]


# -- H.264 with B-frames in AVI: the container stores decode-order stamps only ---------------
def _h264_avi(path, frames, **options):
    opts = {"b_strategy": "0", **options}  # B-frames at fixed places: reordering guaranteed
    return media.write_video(path, frames, gop=7, options=opts)


def test_avi_with_b_frames_stores_stamps_in_decode_order(tmp_path, frames):
    """The premise of the fix: packet stamps ascend, yet the decoder reorders the frames."""
    path = _h264_avi(tmp_path / "b.avi", frames)
    with av.open(str(path)) as container:
        stamps = [p.pts for p in container.demux(video=0) if p.size]
    with av.open(str(path)) as container:
        decoded = [f.pts for f in container.decode(video=0)]
    assert stamps == sorted(stamps) and decoded != sorted(decoded)


@pytest.mark.parametrize("bframes", ["2", "3"])
def test_avi_with_b_frames_every_access_pattern(tmp_path, frames, bframes):
    path = _h264_avi(tmp_path / f"b{bframes}.avi", frames, bf=bframes)
    reference = media.decode_all(path)  # PyAV decodes in presentation order
    # each reference frame is the encoded frame at its index (lossy: nearest one)
    for i, frame in enumerate(reference):
        errors = np.abs(frames.astype(int) - frame).mean(axis=(1, 2))
        assert int(np.argmin(errors)) == i
    reader = VideoReader(path, cache_bytes=0)
    assert len(reader) == len(frames)
    orders = {
        "forward": range(len(reader)),
        "random": np.random.default_rng(5).permutation(len(reader)),
        "backward": range(len(reader) - 1, -1, -1),
    }
    for name, order in orders.items():
        for i in order:
            np.testing.assert_array_equal(reader[int(i)], reference[i], err_msg=f"{name} {i}")
    # a cache of three frames: frames evicted on the way are decoded again, by seeking
    small = VideoReader(path, cache_bytes=3 * 2 * reference[0].nbytes)
    for i in [*range(0, 30, 3), 29, 3, 17, 16, 15, 2, 1, 0]:
        np.testing.assert_array_equal(small[i], reference[i], err_msg=f"small cache {i}")
    got = dict(VideoReader(path).iter_frames())
    assert sorted(got) == list(range(len(frames)))
    for i, frame in got.items():
        np.testing.assert_array_equal(frame, reference[i], err_msg=f"iter_frames {i}")


def test_avi_with_b_frames_and_a_saved_index(tmp_path, frames):
    """The index kept in the sidecar does not say how stamps run: a reopen looks again."""
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.io.framecache import load_index

    path = _h264_avi(tmp_path / "b.avi", frames)
    reference = media.decode_all(path)
    open_cine(path, fill_cache=True, region=False).close()  # saves the index
    assert load_index(path) is not None
    again = open_cine(path, fill_cache=False, region=False)
    assert again._source.index.stamps_ascend  # found by the reopen, not read back
    for i in (20, 8, 9, 29, 1, 0, 15):
        np.testing.assert_array_equal(again[i], reference[i], err_msg=str(i))
    again.close()


def test_mp4_is_still_numbered_by_its_stamps(h264_mp4):
    assert not VideoReader(h264_mp4)._by_output


def test_avi_whose_header_counts_half_frame_ticks(tmp_path, frames):
    """As ``ffmpeg -c copy`` writes an MP4 with B-frames into AVI: a time base of half a
    frame, so the header's length (60) and average rate (50/s) count ticks, not frames."""
    from fractions import Fraction

    path = tmp_path / "ticks.avi"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 50)
        stream.options = {"g": "10", "bf": "2", "b_strategy": "0", "sc_threshold": "0"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="gray")
            frame.pts, frame.time_base = 2 * i, Fraction(1, 50)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 60  # the premise: ticks, not frames
    reference = media.decode_all(path)
    reader = VideoReader(path, cache_bytes=0)  # was: "header declares 60 frames, only 30"
    assert len(reader) == 30 and reader.fps == pytest.approx(25.0)
    for i in np.random.default_rng(2).permutation(30):
        np.testing.assert_array_equal(reader[int(i)], reference[i], err_msg=str(i))


def test_avi_with_b_frames_and_open_gops_is_refused(tmp_path, frames):
    """After a seek the decoder drops the frames shown before an open GOP's keyframe, so
    counting would shift them silently: refused with a hint instead."""
    path = media.write_video(
        tmp_path / "open.avi",
        frames,
        gop=12,
        options={"x264-params": "open-gop=1", "b_strategy": "0"},
    )
    message = _error(path)
    assert "numbered reliably" in message and "re-encode" in message


# -- bad input ------------------------------------------------------------------------------
def _error(path) -> str:
    with pytest.raises(DustrackError) as info:
        VideoReader(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not frames\n" * 20)
    assert "not a readable video" in _error(path)


def test_missing_and_empty_files(tmp_path):
    assert "not found" in _error(tmp_path / "missing.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty" in _error(tmp_path / "empty.mp4")


def test_zero_frame_video(tmp_path):
    assert "no frames" in _error(media.write_empty_video(tmp_path / "zero.mp4"))


def test_audio_only_file(tmp_path):
    assert "no video stream" in _error(media.write_audio(tmp_path / "sound.wav"))


def test_unknown_codec_is_refused_with_a_hint(tmp_path, frames):
    path = media.write_video(tmp_path / "odd.mp4", frames)
    data = bytearray(path.read_bytes())
    entry = data.find(b"avc1", data.find(b"stsd"))  # the sample entry's codec: unknown now
    data[entry : entry + 4] = b"zzzz"
    path.write_bytes(bytes(data))
    message = _error(path)
    assert "codec unknown" in message and "re-encode" in message and "odd.mp4" in message


def test_truncated_mp4_without_index(tmp_path, frames):
    path = media.write_video(tmp_path / "cut.mp4", frames)  # index (moov) written last
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert "not a readable video" in _error(path)


def test_truncated_mp4_with_index_first(tmp_path, frames):
    path = media.write_video(
        tmp_path / "cut_fast.mp4", frames, container_options={"movflags": "faststart"}
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert "truncated" in message and "header declares 30 frames" in message


def test_corrupt_bytes_never_escape_as_other_errors(tmp_path, frames):
    path = media.write_video(tmp_path / "corrupt.avi", frames, codec="mjpeg", pix_fmt="yuvj420p")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 3
    noise = rng.integers(0, 256, len(data) // 3, dtype=np.uint8).tobytes()
    data[start : start + len(noise)] = noise
    path.write_bytes(bytes(data))
    try:
        reader = VideoReader(path)
    except DustrackError as exc:
        assert str(path) in str(exc)
        return
    readable = 0
    for i in range(len(reader)):
        try:
            frame = reader[i]
        except DustrackError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        else:
            assert frame.shape == frames.shape[1:] and frame.dtype == np.uint8
            readable += 1
    assert readable >= 5  # the intact first third still decodes


def test_cached_frames_are_read_only(h264_mp4):
    reader = VideoReader(h264_mp4)
    frame = reader[3]
    with pytest.raises(ValueError):
        frame[0, 0] = 1  # would silently change what the next reader[3] returns
    np.testing.assert_array_equal(reader[3], media.decode_all(h264_mp4)[3])


def test_raw_elementary_stream_is_refused_with_a_hint(tmp_path, frames):
    path = tmp_path / "raw.h264"
    with av.open(str(path), "w", format="h264") as out:  # no container: no timestamps
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for frame in frames[:12]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert "no timestamps" in _error(path) and "remux" in _error(path)


def test_one_grey_rule_for_the_optical_flow():
    """``to_gray_u8`` (what LK reads): uint8 passes through, float 0..1 is scaled, not cut."""
    from napari_dustrack.io.pixels import to_gray, to_gray_u8

    grey = np.random.default_rng(0).integers(0, 256, (12, 16)).astype(np.uint8)
    assert to_gray_u8(grey) is grey
    np.testing.assert_array_equal(to_gray_u8(grey / 255.0), grey)  # was 0/1 before
    np.testing.assert_array_equal(to_gray_u8(grey.astype(np.float64)), grey)
    np.testing.assert_array_equal(
        to_gray_u8(grey.astype(np.uint16) * 2), np.minimum(grey.astype(int) * 2, 255)
    )
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    np.testing.assert_array_equal(to_gray_u8(rgb), to_gray(rgb))
    assert to_gray_u8(rgb[::2]).flags.c_contiguous
