"""`napari-dustrack measure VIDEO --tracks T.csv --measures M.json --out OUT.csv`."""

from __future__ import annotations

from ..errors import DustrackError
from ..io.export import write_measurements_csv
from ..io.points_io import read_points
from ..io.table import check_frames
from ..measure import Calibration, compute, load_measures
from ._args import POSITIVE, add_video

HELP = "measurements over time (distance, area, strain, angles...)"
DESTINATION = ("out", False)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack measure``."""
    add_video(p)
    p.add_argument("--tracks", required=True, help="point table to measure")
    p.add_argument("--measures", required=True, help="measure definitions (JSON)")
    p.add_argument("--out", required=True, help="output measurements CSV")
    p.add_argument(
        "--spacing",
        type=POSITIVE,
        nargs=2,
        metavar=("DY", "DX"),
        default=None,
        help="pixel spacing in mm (rows, columns), overriding the file's",
    )
    p.add_argument("--fps", type=POSITIVE, default=None, help="frame rate, overriding the file's")


def video_calibration(video, spacing=None, fps=None) -> tuple[Calibration, int]:
    """Pixel spacing, frame rate (the file's unless given) and frame count of a cine.

    Lazy: no frame is decoded. MP4 and most containers carry no pixel spacing: ``spacing``
    supplies it.
    """
    from ..io.cine import open_frames

    cine = open_frames(video)
    try:
        return Calibration.of(spacing or cine.pixel_spacing, fps or cine.fps), len(cine)
    finally:
        cine.close()


def run(args) -> None:
    measures = load_measures(args.measures)
    table = read_points(args.tracks)
    calibration, n_frames = video_calibration(args.video, args.spacing, args.fps)
    check_frames(table, n_frames, args.tracks)
    try:
        result = compute(table, measures, calibration, n_frames=n_frames)
    except DustrackError as exc:
        raise DustrackError(exc.problem, args.tracks) from None
    write_measurements_csv(result, args.out)
    units = f"{calibration.length_unit}, {calibration.time_unit}"
    print(
        f"{args.out}: {len(result)} frames, {len(measures)} measure(s), "
        f"{len(result.columns) - 1 - bool(calibration.fps)} column(s) in {units}"
    )
