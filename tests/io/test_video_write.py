"""Writing H.264 videos: frame count, frame rate, fidelity, odd sizes, colour, atomicity."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.video_write import write_video


def _frames(n=12, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h + 8, w + 8)).astype(np.uint8)
    # a moving textured image (what a cine looks like to the encoder)
    return np.stack([base[(i % 8) : (i % 8) + h, 0:w] for i in range(n)])


def _decode(path, fmt="gray"):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = np.stack([f.to_ndarray(format=fmt) for f in c.decode(video=0)])
        return frames, stream.average_rate, stream.codec_context.pix_fmt


@pytest.mark.parametrize(
    "fps, rate", [(50, Fraction(50)), (29.97, Fraction(30000, 1001)), (12.5, Fraction(25, 2))]
)
def test_round_trip_keeps_frame_count_rate_and_pixels(tmp_path, fps, rate):
    frames = _frames()
    out = write_video(frames, tmp_path / "v.mp4", fps, crf=0)
    decoded, avg, pix_fmt = _decode(out)
    assert decoded.shape == frames.shape and avg == rate and pix_fmt == "yuv420p"
    # crf 0 is lossless up to the full -> video range conversion of yuv420p (+-1 level)
    assert np.abs(decoded.astype(int) - frames).max() <= 2


def test_default_quality_keeps_speckle(tmp_path):
    from napari_dustrack.simulate import simulate

    sim = simulate("cardiac", n_frames=8, shape=(96, 96))
    decoded, _, _ = _decode(write_video(sim.frames, tmp_path / "s.mp4", sim.fps))
    err = np.abs(decoded.astype(float) - sim.frames)
    assert err.mean() < 4 and err.mean() < 0.1 * sim.frames.std()


def test_odd_sizes_are_padded_at_the_bottom_right(tmp_path):
    frames = _frames(n=5, h=33, w=47)
    decoded, _, _ = _decode(write_video(frames, tmp_path / "odd.mp4", 25, crf=0))
    assert decoded.shape == (5, 34, 48)
    assert np.abs(decoded[:, :33, :47].astype(int) - frames).max() <= 2
    assert np.abs(decoded[:, 33, :47].astype(int) - frames[:, 32]).max() <= 8


def test_rgb_frames_and_generators(tmp_path):
    rgb = np.zeros((6, 32, 32, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[:, 10:20, 10:20] = (0, 0, 255)
    out = write_video((f for f in rgb), tmp_path / "c.mkv", 10, crf=0)
    decoded, avg, _ = _decode(out, "rgb24")
    assert decoded.shape == rgb.shape and avg == 10
    assert np.abs(decoded[:, 2, 2].astype(int) - (200, 0, 0)).max() < 12
    assert np.abs(decoded[:, 15, 15].astype(int) - (0, 0, 255)).max() < 12


def test_keyframe_interval_is_honoured(tmp_path):
    out = write_video(_frames(n=40), tmp_path / "k.mp4", 30, keyframe_interval=10)
    with av.open(str(out)) as c:
        keys = [i for i, f in enumerate(c.decode(video=0)) if f.key_frame]
    assert keys == [0, 10, 20, 30]


def test_progress_is_reported(tmp_path):
    seen = []
    write_video(_frames(n=4), tmp_path / "p.mp4", 25, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.parametrize(
    "frames, name, match",
    [
        (np.zeros((3, 16, 16), np.float32), "f.mp4", "uint8"),
        (np.zeros((3, 16, 16, 4), np.uint8), "f.mp4", r"\(H, W\)"),
        (np.zeros((0, 16, 16), np.uint8), "f.mp4", "no frames"),
        (np.zeros((3, 16, 16), np.uint8), "f.gif", "cannot write"),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing(tmp_path, frames, name, match):
    with pytest.raises(DustrackError, match=match):
        write_video(frames, tmp_path / name, 25)
    assert list(tmp_path.iterdir()) == []


def test_bad_frame_rate_is_refused(tmp_path):
    with pytest.raises(DustrackError, match="frame rate"):
        write_video(_frames(n=2), tmp_path / "r.mp4", 0)


def test_a_failure_midway_keeps_the_old_file(tmp_path):
    target = tmp_path / "v.mp4"
    write_video(_frames(n=3), target, 25)
    before = target.read_bytes()

    def frames():
        yield from _frames(n=3)
        yield np.zeros((10, 10), np.uint8)  # another size: refused mid-stream

    with pytest.raises(DustrackError, match="frame 3"):
        write_video(frames(), target, 25)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
