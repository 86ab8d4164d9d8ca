"""What the subcommands' arguments have in common: checked number types (finite, in range: a bad
value is an argparse error naming the option) and the options several commands take."""

from __future__ import annotations

import argparse
import math

from ..errors import DustrackError


def _number(kind: type, low: float, inclusive: bool, what: str):
    """An argparse type: a finite ``kind`` that is > ``low`` (>= with ``inclusive``)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


POSITIVE = _number(float, 0.0, False, "a positive number")
POSITIVE_INT = _number(int, 1, True, "a whole number >= 1")
COUNT = _number(int, 0, True, "a whole number >= 0")


def add_video(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="cine file (MP4/AVI/MOV/MKV, DICOM, TIFF) or folder of frames")


def add_scheduler(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler", default=None, help="dask scheduler address (default: a local cluster)"
    )


def window_in_frames(args, fps: float | None) -> int:
    """The smoother window in frames from ``--window`` (seconds) or ``--window-frames``.

    A cine without a frame rate is refused here in the command's words (the algorithm's message
    names its parameter, not this option)."""
    from ..tracking.smoothing import window_frames

    if args.window_frames is None and not fps:
        raise DustrackError(
            "the video has no frame rate; give the window in frames (--window-frames)", args.video
        )
    return window_frames(args.window, fps, args.window_frames, args.video)
