"""The ``napari-dustrack`` command (contract in DESIGN.md).

Each subcommand's work lives in ``commands/<name>.py`` as ``run(args) -> None``; this module
parses and checks the arguments (numbers finite and in range, destinations writable) before any
work starts, and is the one place where a user's bad input becomes a one-line message
(``<file>: <problem>``) and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys

from . import __version__
from .errors import DustrackError, user_message
from .tracking.modes import SMOOTH_MODES, SmoothMode

# The destination of each subcommand: (option, is a folder). Checked before the work starts.
DESTINATIONS = {
    "propagate": ("out", False), "train": ("model", True), "predict": ("out", False),
    "smooth": ("out", False), "batch": ("out", True), "simulate": ("out", True),
    "measure": ("out", False), "export": ("out", False), "demo": ("out", True),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block): ``<prog>: error: <problem>``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


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


def _video(p):
    p.add_argument("video", help="cine file (MP4/AVI/MOV/MKV, DICOM, TIFF) or folder of frames")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="napari-dustrack",
        description="Point tracking in ultrasound cines: propagate keyframes, train and run a "
        "U-Net heatmap model, smooth tracks, measure.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("propagate", help="fill frames between keyframes with optical flow (LK + RSTC)")
    _video(p)
    p.add_argument("--keyframes", required=True, help="point table (CSV/DLC/DUSTrack JSON) of keyframes")
    p.add_argument("--out", required=True, help="output point-table CSV")
    p.add_argument("--extend", type=COUNT, default=0, metavar="N", help="also track N frames beyond the first/last keyframe")

    p = sub.add_parser("train", help="train a U-Net heatmap model on curated frames")
    _video(p)
    p.add_argument("--labels", required=True, help="point table with the manual/reviewed frames")
    p.add_argument("--model", required=True, help="model folder to write (or to continue from)")
    p.add_argument("--minutes", type=POSITIVE, default=None, help="training time budget")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: a local cluster)")

    p = sub.add_parser("predict", help="predict every frame with a trained model")
    _video(p)
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--out", required=True, help="output point-table CSV (with confidence)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: a local cluster)")

    p = sub.add_parser("smooth", help="remove jitter with the optical-flow windowed smoother")
    _video(p)
    p.add_argument("--tracks", required=True, help="point table to smooth (e.g. the model's predictions)")
    p.add_argument("--window", type=POSITIVE, default=0.5, help="window in seconds (default 0.5)")
    p.add_argument("--window-frames", type=POSITIVE_INT, default=None, help="window in frames (for videos without a frame rate)")
    p.add_argument("--mode", choices=sorted(SMOOTH_MODES), default=SmoothMode.FUSION.value)
    p.add_argument("--out", required=True, help="output point-table CSV")

    p = sub.add_parser("finalize", help="final tracks: annotations kept, flow and model weighed, model bias removed")
    _video(p)
    p.add_argument("--annotations", required=True, help="point table whose manual/reviewed rows are kept")
    p.add_argument("--flow", default=None, help="keyframe fill (point table with confidence)")
    p.add_argument("--model", default=None, help="model predictions (point table with confidence)")
    p.add_argument("--window", type=float, default=0.5, help="smoother window in seconds (default 0.5)")
    p.add_argument("--window-frames", type=int, default=None, help="window in frames (for videos without a frame rate)")
    p.add_argument("--no-bias-correction", action="store_true", help="keep the model's systematic error")
    p.add_argument("--out", required=True, help="output point-table CSV")

    p = sub.add_parser("batch", help="predict (and smooth) many videos on dask.distributed")
    p.add_argument("videos", nargs="+", help="cine files or folders")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--out", required=True, help="output folder (one table per video)")
    p.add_argument("--smooth", type=POSITIVE, default=None, metavar="SECONDS", help="also smooth with this window")
    p.add_argument("--mode", choices=sorted(SMOOTH_MODES), default=SmoothMode.FUSION.value, help="smoothing mode")
    p.add_argument("--chunk-frames", type=POSITIVE_INT, default=None, metavar="N",
                   help="frames per task for long videos (default 1000)")
    p.add_argument("--scheduler", default=None, help="dask scheduler address (default: a local cluster)")

    p = sub.add_parser("simulate", help="write a synthetic ultrasound cine with ground truth")
    p.add_argument("--scenario", default="cardiac", help="cardiac, muscle, probe_slide or probe_slide_decorrelated")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=POSITIVE_INT, default=None, help="number of frames")
    p.add_argument("--seed", type=COUNT, default=0, help="random seed (>= 0)")

    p = sub.add_parser("measure", help="measurements over time (distance, area, strain, angles...)")
    _video(p)
    p.add_argument("--tracks", required=True, help="point table to measure")
    p.add_argument("--measures", required=True, help="measure definitions (JSON)")
    p.add_argument("--out", required=True, help="output measurements CSV")
    p.add_argument("--spacing", type=POSITIVE, nargs=2, metavar=("DY", "DX"), default=None,
                   help="pixel spacing in mm (rows, columns), overriding the file's")
    p.add_argument("--fps", type=POSITIVE, default=None, help="frame rate, overriding the file's")

    p = sub.add_parser("export", help="convert a point table (CSV, DeepLabCut, DUSTrack JSON, MP4 overlay)")
    _video(p)
    p.add_argument("--tracks", required=True, help="point table to export")
    p.add_argument("--out", required=True, help="output file: .csv, .h5 (DeepLabCut), .json (DUSTrack) or .mp4")
    p.add_argument("--format", choices=("csv", "dlc", "dustrack", "mp4"), default=None)

    p = sub.add_parser("demo", help="run the whole loop headless on the built-in simulated cine")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="a shorter run (for tests)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"napari_dustrack.commands.{args.command}")
    try:
        _check_destination(args)
        module.run(args)
    except (DustrackError, OSError) as exc:
        print(f"napari-dustrack {args.command}: error: {user_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-dustrack {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _check_destination(args) -> None:
    from .io.atomic import check_destination

    option, folder = DESTINATIONS.get(args.command, (None, False))
    if option is not None:
        check_destination(getattr(args, option), folder=folder, try_write=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
