"""Fixtures for the cine reader tests: small real media files written once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import media  # noqa: E402  (tests/io/media.py, shared with tests/_napari)


@pytest.fixture(scope="session")
def frames():
    """30 distinct gray frames, 64 x 96."""
    return media.make_frames(30)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def h264_mp4(media_dir, frames):
    """H.264 MP4, keyframe every 10 frames, B-frames (pts reordered), 25 fps."""
    return media.write_video(media_dir / "h264.mp4", frames, fps=25, gop=10)


@pytest.fixture(scope="session")
def mjpeg_avi(media_dir, frames):
    """Motion-JPEG AVI (every frame a keyframe, full-range yuvj420p), 30 fps."""
    return media.write_video(
        media_dir / "mjpeg.avi",
        frames,
        fps=30,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        options={"q:v": "2"},
    )


@pytest.fixture(scope="session")
def h264_mkv(media_dir, frames):
    """H.264 in Matroska (index holds keyframes only), 12.5 fps."""
    return media.write_video(media_dir / "h264.mkv", frames, fps=12.5, gop=7)


@pytest.fixture(scope="session")
def mpeg4_mov(media_dir, frames):
    """MPEG-4 part 2 in a QuickTime MOV, 20 fps."""
    return media.write_video(
        media_dir / "mpeg4.mov", frames, fps=20, codec="mpeg4", gop=8, options={"qscale": "2"}
    )
