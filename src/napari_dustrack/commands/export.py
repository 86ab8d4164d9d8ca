"""`napari-dustrack export VIDEO --tracks T.csv --out FILE [--format csv|dlc|dustrack|mp4]`."""

from __future__ import annotations

from ..errors import DustrackError
from ..io.export import export_mp4, export_points, guess_format
from ..io.points_io import read_points
from ..io.table import check_frames
from ._args import add_video

HELP = "convert a point table (CSV, DeepLabCut, DUSTrack JSON, MP4 overlay)"
DESTINATION = ("out", False)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack export``."""
    add_video(p)
    p.add_argument("--tracks", required=True, help="point table to export")
    p.add_argument(
        "--out", required=True, help="output file: .csv, .h5 (DeepLabCut), .json (DUSTrack) or .mp4"
    )
    p.add_argument("--format", choices=("csv", "dlc", "dustrack", "mp4"), default=None)


def run(args) -> None:
    fmt = args.format or guess_format(args.out)
    table = read_points(args.tracks)
    if table.empty and fmt != "csv":
        raise DustrackError("has no points to export", args.tracks)
    if fmt in ("csv", "dustrack"):
        export_points(table, args.out, fmt=fmt)
    else:
        from ..io.cine import open_frames

        cine = open_frames(args.video)  # read once, in order: no cache
        try:
            check_frames(table, len(cine), args.tracks)
            if fmt == "mp4":
                export_mp4(cine, table, args.out, fps=cine.fps)
            else:
                export_points(table, args.out, fmt="dlc", video=args.video, n_frames=len(cine))
        finally:
            cine.close()
    print(f"{args.out}: {fmt} export of {table['label'].nunique()} label(s), {len(table)} point(s)")
