"""Exports: point tables for other tools, measurement tables, and a video with the tracks drawn.

Point tables go through :func:`napari_dustrack.io.points_io.write_points` (native CSV,
DeepLabCut ``CollectedData`` CSV/H5, DUSTrack JSON); every file is written atomically.
The MP4 overlay draws each label as a coloured dot with a short tail and its name on the cine's
frames (OpenCV) and encodes them as H.264 (:func:`napari_dustrack.io.video_write.write_video`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..errors import DustrackError, raise_if_cancelled
from .atomic import write_atomic
from .colours import hex_to_rgb, label_colour  # noqa: F401 - re-exported for callers
from .points_io import output_format, write_points
from .region import mask_frames
from .table import labels_of, read_csv, to_array, validate
from .video_write import write_video

FORMATS = ("csv", "dlc", "dustrack", "mp4")


def _rgb(colour) -> tuple[int, int, int]:
    """``#rrggbb`` or an ``(r, g, b)`` of 0..255."""
    if isinstance(colour, str):
        return hex_to_rgb(colour)
    return tuple(int(c) for c in colour[:3])


def guess_format(path: str | os.PathLike) -> str:
    """Export format from a file name: ``.csv`` native, ``.h5`` DeepLabCut, ``.json`` DUSTrack,
    ``.mp4`` overlay video; a CSV named ``CollectedData*`` is DeepLabCut."""
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = "mp4" if suffix == ".mp4" else output_format(path)
    if fmt:
        return fmt
    raise DustrackError(
        f"cannot tell the export format from {suffix or 'no suffix'}; "
        "use .csv, .h5, .json or .mp4 (or give the format)",
        path,
    )


def export_points(
    table: pd.DataFrame,
    path: str | os.PathLike,
    fmt: str | None = None,
    video: str | os.PathLike | None = None,
    n_frames: int | None = None,
    scorer: str = "dustrack",
) -> Path:
    """Write a point table as native CSV, DeepLabCut CollectedData (CSV/H5) or DUSTrack JSON.

    Parameters
    ----------
    table : DataFrame
        Point table.
    path : path-like
        Destination; replaced atomically (the old file kept as ``.bak``).
    fmt : {"csv", "dlc", "dustrack"}, optional
        Default: from the file name (:func:`guess_format`).
    video : path-like, optional
        The video, whose stem names DeepLabCut's ``labeled-data/<video>`` folder.
    n_frames : int, optional
        Frames in the video (zero-padding of DeepLabCut image names).
    scorer : str
        DeepLabCut scorer name.
    """
    path = Path(path)
    fmt = fmt or guess_format(path)
    if fmt == "dlc":
        if path.suffix.lower() not in (".csv", ".h5", ".hdf5"):
            raise DustrackError("DeepLabCut files end in .csv or .h5", path)
        stem = Path(video).stem if video is not None else "video"
        return write_points(table, path, fmt="dlc", scorer=scorer, video=stem, n_frames=n_frames)
    if fmt in ("csv", "dustrack"):
        return write_points(table, path, fmt=fmt)
    raise DustrackError(f"not a point-table format: {fmt!r}; expected csv, dlc or dustrack", path)


def write_measurements_csv(result: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a measurement table (from :func:`napari_dustrack.measure.compute`) atomically."""
    if "frame" not in result.columns:
        raise DustrackError("a measurement table needs a 'frame' column", path)
    return write_atomic(path, lambda p: result.to_csv(p, index=False))


def read_measurements_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a measurements CSV written by :func:`write_measurements_csv`."""
    result = read_csv(path)
    if "frame" not in result.columns:
        raise DustrackError("not a measurement table: no 'frame' column", path)
    return result


# --- video with the tracks drawn ---------------------------------------------------------


def auto_scale(shape: Sequence[int], min_side: int = 384) -> int:
    """Whole-number upscaling that makes the shorter side at least ``min_side`` pixels.

    Labels drawn on a 128-pixel cine would be unreadable at its own size.
    """
    return max(1, int(np.ceil(min_side / max(1, min(shape[:2])))))


def overlay_frames(
    frames,
    table: pd.DataFrame,
    tail: int = 10,
    scale: int = 1,
    labels: Sequence[str] | None = None,
    fps: float | None = None,
    colours: dict[str, str] | None = None,
) -> Iterator[np.ndarray]:
    """Yield RGB frames ``(H*scale, W*scale, 3)`` uint8 with the tracks drawn.

    Parameters
    ----------
    frames : sequence of frames
        Anything with ``len()`` and ``frames[i]`` (grey or RGB), visited in order.
    table : DataFrame
        Point table; frames beyond ``len(frames)`` are ignored.
    tail : int
        Number of previous frames each label's tail reaches back.
    scale : int
        Whole-number upscaling of the picture (nearest neighbour) before drawing.
    labels : sequence of str, optional
        Labels to draw (default all, in order of appearance); colours follow this order.
    fps : float, optional
        Shown with the frame number as the time.
    colours : dict, optional
        ``{label: "#rrggbb" or (r, g, b)}``; labels not in it get :func:`label_colour` of
        their position.
    """
    table = validate(table)
    labels = list(labels) if labels is not None else labels_of(table)
    n = len(frames)
    xy, _ = to_array(table, labels, n)
    colours = [
        _rgb(colours[lab]) if colours and lab in colours else label_colour(i)
        for i, lab in enumerate(labels)
    ]
    # Pixel centres: source pixel i spans i*scale .. (i+1)*scale - 1 after upscaling.
    xy = xy * scale + (scale - 1) / 2
    for t in range(n):
        image = _to_rgb(np.asarray(frames[t]), scale)
        style = _Style(image.shape)
        recent = xy[max(0, t - tail) : t + 1]
        # Tails, then names, then dots: no name or tail hides where a point is.
        for j in range(len(labels)):
            _draw_tail(image, recent[:, j], colours[j], style)
        for j, label in enumerate(labels):
            _draw_name(image, recent[-1, j], label, colours[j], style)
        for j in range(len(labels)):
            _draw_dot(image, recent[-1, j], colours[j], style)
        stamp = f"frame {t}" + (f"  {t / fps:.3f} s" if fps else "")
        _text(image, stamp, (style.pad, style.pad + style.text_h), (255, 255, 255), style)
        yield image


class _Style:
    """Sizes of dots, lines and text for a picture of ``shape``."""

    def __init__(self, shape):
        side = min(shape[:2])
        self.radius = max(2, round(side / 120))
        self.thickness = max(1, round(side / 300))
        self.font_scale = max(0.3, side / 900)
        self.text_h = cv2.getTextSize(
            "Ag", cv2.FONT_HERSHEY_SIMPLEX, self.font_scale, self.thickness
        )[0][1]
        self.pad = max(2, self.radius)


_SHIFT = 4  # OpenCV fixed-point bits: positions drawn to 1/16 pixel


def _fixed(p) -> tuple[int, int]:
    return int(round(p[0] * (1 << _SHIFT))), int(round(p[1] * (1 << _SHIFT)))


def _draw_tail(image: np.ndarray, history: np.ndarray, colour, style: _Style) -> None:
    """Line through the finite points of ``history`` (oldest first); a gap breaks it."""
    ok = np.isfinite(history).all(axis=1)
    for a, b, oa, ob in zip(history[:-1], history[1:], ok[:-1], ok[1:], strict=False):
        if oa and ob:
            cv2.line(image, _fixed(a), _fixed(b), colour, style.thickness, cv2.LINE_AA, _SHIFT)


def _draw_dot(image: np.ndarray, p: np.ndarray, colour, style: _Style) -> None:
    if np.isfinite(p).all():
        cv2.circle(image, _fixed(p), style.radius << _SHIFT, colour, -1, cv2.LINE_AA, _SHIFT)


def _draw_name(image: np.ndarray, p: np.ndarray, label: str, colour, style: _Style) -> None:
    if np.isfinite(p).all():
        origin = (int(round(p[0])) + style.radius + 2, int(round(p[1])) - style.radius - 2)
        _text(image, label, origin, colour, style)


def _text(image, text, origin, colour, style: _Style) -> None:
    # A dark outline first keeps the text readable over bright speckle.
    for ink, thickness in (((0, 0, 0), style.thickness + 2), (colour, style.thickness)):
        cv2.putText(
            image,
            text,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            style.font_scale,
            ink,
            thickness,
            cv2.LINE_AA,
        )


def _to_rgb(frame: np.ndarray, scale: int) -> np.ndarray:
    if frame.dtype != np.uint8:
        lo, hi = float(np.nanmin(frame)), float(np.nanmax(frame))
        frame = np.clip((frame - lo) / (hi - lo or 1.0) * 255, 0, 255).astype(np.uint8)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = frame[:, :, :3]
    elif frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise DustrackError(f"cannot draw on a frame of shape {frame.shape}")
    if scale > 1:  # nearest neighbour: each pixel becomes a scale x scale block
        h, w = frame.shape[:2]
        frame = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST_EXACT)
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(frame)


def export_mp4(
    frames,
    table: pd.DataFrame,
    path: str | os.PathLike,
    fps: float | None = None,
    tail: int = 10,
    scale: int | None = None,
    labels: Sequence[str] | None = None,
    colours: dict[str, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> Path:
    """Write an H.264 MP4 of ``frames`` with the tracks of ``table`` drawn on them.

    Parameters
    ----------
    frames : sequence of frames
        The cine (e.g. :func:`napari_dustrack.io.cine.open_cine`), a numpy or dask array.
    table : DataFrame
        Point table to draw.
    path : path-like
        Output ``.mp4``, written atomically.
    fps : float, optional
        Frame rate of the output (default 25 when the cine has none).
    tail : int
        Frames of history drawn behind each point.
    scale : int, optional
        Whole-number upscaling; default :func:`auto_scale`.
    labels, colours
        As in :func:`overlay_frames`.
    progress, cancel
        ``progress(done, total)`` and a ``threading.Event`` that stops the export.
    """
    n = len(frames)
    if n == 0:
        raise DustrackError("the cine has no frames", path)
    first = np.asarray(frames[0])
    scale = auto_scale(first.shape) if scale is None else int(scale)
    fps = float(fps) if fps else 25.0
    frames = mask_frames(frames)  # burned-in text and panels outside the image stay black
    images = overlay_frames(
        frames, table, tail=tail, scale=scale, labels=labels, fps=fps, colours=colours
    )
    return write_video(_watched(images, n, progress, cancel), path, fps, crf=18, preset="veryfast")


def _watched(
    images: Iterator[np.ndarray], total: int, progress=None, cancel=None
) -> Iterator[np.ndarray]:
    """Pass frames through, reporting progress and stopping (Cancelled) when asked."""
    for i, image in enumerate(images):
        raise_if_cancelled(cancel)
        yield image
        if progress is not None:
            progress(i + 1, total)
