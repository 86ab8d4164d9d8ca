"""`napari-dustrack smooth VIDEO --tracks RAW.csv --window 0.5 [--window-frames W]
[--mode dustrack|fast|fusion] --out OUT.csv`.

Reads the tracks (any point format), smooths every label with the optical-flow smoother and
writes a point table with source ``smoothed`` (the input's confidence carried over).
"""

from __future__ import annotations

import numpy as np

from ..errors import DustrackError
from ..io.points_io import read_points, write_points
from ..io.sources import PointSource
from ..io.table import from_array, tracks_array
from ..tracking.modes import SMOOTH_MODES, SmoothMode
from ._args import POSITIVE, POSITIVE_INT, add_video, window_in_frames
from ._progress import terminal_progress

HELP = "remove jitter with the optical-flow windowed smoother"
DESTINATION = ("out", False)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack smooth``."""
    add_video(p)
    p.add_argument(
        "--tracks", required=True, help="point table to smooth (e.g. the model's predictions)"
    )
    p.add_argument("--window", type=POSITIVE, default=0.5, help="window in seconds (default 0.5)")
    p.add_argument(
        "--window-frames",
        type=POSITIVE_INT,
        default=None,
        help="window in frames (for videos without a frame rate)",
    )
    p.add_argument("--mode", choices=sorted(SMOOTH_MODES), default=SmoothMode.FUSION.value)
    p.add_argument("--out", required=True, help="output point-table CSV")


def run(args) -> None:
    from ..io.cine import open_frames
    from ..tracking.smoothing import smooth

    table = read_points(args.tracks)
    cine = open_frames(args.video)  # read in order: no cache needed
    try:
        window = window_in_frames(args, cine.fps)
        xy, conf, labels = tracks_array(table, len(cine), args.tracks)
        try:
            out = smooth(
                cine,
                xy,
                window,
                args.mode,
                confidence=conf,
                labels=labels,
                progress=terminal_progress("smoothing"),
            )
        except DustrackError as exc:
            raise DustrackError(exc.problem, exc.path or args.tracks) from None
    finally:
        cine.close()
    keep_conf = conf if conf is not None else np.ones(xy.shape[:2])
    result = from_array(out, labels, source=PointSource.SMOOTHED, confidence=keep_conf)
    write_points(result, args.out)
    print(
        f"{args.out}: {len(result)} smoothed point(s), {len(labels)} label(s), "
        f"window {window} frames, mode {args.mode}"
    )
    print(_flags(xy, out, conf))


def _flags(xy, out, conf) -> str:
    """What the user should look at: unreliable input points and points the smoother moved far
    (an estimate it overruled: an outlier, or a place where the video and the input disagree)."""
    from ..tracking.flow_confidence import flag_summary

    moved = np.linalg.norm(out - xy, axis=2) > MOVED_PX
    c = np.ones(xy.shape[:2]) if conf is None else np.nan_to_num(conf, nan=0.0)
    c = np.where(moved, 0.0, c)
    flags = flag_summary(out, c)
    return (
        flags.line("smoothing") + f" ({int(np.nansum(moved))} moved by more than {MOVED_PX:g} px)"
    )


MOVED_PX = 3.0
