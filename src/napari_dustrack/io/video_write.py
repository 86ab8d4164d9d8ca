"""Write frames to an H.264 video (MP4/MOV/MKV) with PyAV.

Used for simulated cines (whose ground truth must survive the encoding, hence a low CRF by
default) and for exporting videos with tracks drawn on them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import DustrackError
from .atomic import atomic_path

_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def _rate(fps) -> Fraction:
    """The frame rate as an exact fraction (29.97 -> 30000/1001, 25.0 -> 25)."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise DustrackError(f"frame rate must be a positive number, not {fps!r}")
    if isinstance(fps, Fraction):
        return fps
    ntsc = Fraction(round(value * 1.001) * 1000, 1001)
    if abs(float(ntsc) - value) < 1e-3 and abs(value - round(value)) > 1e-3:
        return ntsc
    return Fraction(value).limit_denominator(1000)


def _as_frame(img, path) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise DustrackError(f"frames must be uint8, not {img.dtype}", path)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise DustrackError(f"a frame must be (H, W) or (H, W, 3), not {img.shape}", path)
    # yuv420p needs even sides: repeat the last row/column so pixel coordinates do not move
    pad = ((0, img.shape[0] % 2), (0, img.shape[1] % 2)) + ((0, 0),) * (img.ndim - 2)
    if any(p[1] for p in pad):
        img = np.pad(img, pad, mode="edge")
    return np.ascontiguousarray(img)


def write_video(
    frames: np.ndarray | Iterable[np.ndarray],
    path: str | os.PathLike,
    fps: float,
    crf: int = 12,
    preset: str = "medium",
    keyframe_interval: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Encode frames as H.264 (yuv420p) and atomically write the video.

    Parameters
    ----------
    frames : array or iterable of arrays
        uint8 ``(N, H, W)`` grayscale or ``(N, H, W, 3)`` RGB, or an iterable of such frames
        (encoded as they come, so a long cine need not be held in memory). Odd heights/widths
        are padded by one repeated row/column at the bottom/right.
    path : path-like
        ``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``.
    fps : float
        Frame rate stored in the container.
    crf : int
        x264 constant rate factor: 0 is lossless, lower is better; 12 keeps speckle detail.
    preset : str
        x264 speed/size trade-off (``ultrafast`` ... ``veryslow``).
    keyframe_interval : int, optional
        Fixed distance between keyframes (default: the encoder's choice, at most 250).
    progress : callable, optional
        ``progress(done, total)`` after each frame (``total`` is 0 when unknown).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DustrackError(
            f"cannot write {path.suffix or 'files without an extension'}; "
            f"use one of {', '.join(_FORMATS)}",
            path,
        )
    rate = _rate(fps)
    total = len(frames) if hasattr(frames, "__len__") else 0
    with atomic_path(path, backup=False) as tmp:
        n = _encode(frames, tmp, fmt, rate, crf, preset, keyframe_interval, progress, total, path)
    if n == 0:
        path.unlink()
        raise DustrackError("no frames to write", path)
    return path


def _encode(frames, tmp, fmt, rate, crf, preset, keyframe_interval, progress, total, path) -> int:
    n = 0
    # index first (faststart): players and our reader open the file without scanning it
    options = {"movflags": "+faststart"} if fmt in ("mp4", "mov") else {}
    with av.open(str(tmp), mode="w", format=fmt, options=options) as container:
        stream = None
        for img in frames:
            img = _as_frame(img, path)
            if stream is None:
                stream = _open_stream(container, img.shape, rate, crf, preset, keyframe_interval)
            elif img.shape[:2] != (stream.height, stream.width):
                raise DustrackError(
                    f"frame {n} is {img.shape[:2]}, the first was {(stream.height, stream.width)}",
                    path,
                )
            frame = av.VideoFrame.from_ndarray(img, format="gray" if img.ndim == 2 else "rgb24")
            frame = frame.reformat(format="yuv420p")
            frame.pts = n
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
            n += 1
            if progress is not None:
                progress(n, total)
        if stream is not None:
            container.mux(stream.encode(None))
    return n


def _open_stream(container, shape, rate, crf, preset, keyframe_interval):
    stream = container.add_stream("libx264", rate=rate)
    stream.height, stream.width = shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.time_base = 1 / rate
    options = {"crf": str(int(crf)), "preset": preset}
    if keyframe_interval:
        k = int(keyframe_interval)
        options["x264-params"] = f"keyint={k}:min-keyint={k}:scenecut=0"
    stream.options = options
    return stream
