"""`napari-dustrack batch VIDEOS... --model MODEL_DIR --out DIR [--smooth SECONDS]
[--scheduler ADDRESS]`.

Predicts (and smooths) every cine on dask.distributed (see :mod:`napari_dustrack.workers.batch`):
a progress bar on stderr, the summary table on stdout and in ``DIR/summary.csv``. A rerun
skips the videos already complete. Exit status 2 when any video failed, after all others
were processed.
"""

from __future__ import annotations

import os
import sys

from ..errors import DustrackError
from ..tracking.modes import SMOOTH_MODES, SmoothMode
from ._args import POSITIVE, POSITIVE_INT, add_scheduler
from ._progress import BatchProgress

HELP = "predict (and smooth) many videos on dask.distributed"
DESTINATION = ("out", True)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack batch``."""
    p.add_argument("videos", nargs="+", help="cine files or folders")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--out", required=True, help="output folder (one table per video)")
    p.add_argument(
        "--smooth",
        type=POSITIVE,
        default=None,
        metavar="SECONDS",
        help="also smooth with this window",
    )
    p.add_argument(
        "--mode",
        choices=sorted(SMOOTH_MODES),
        default=SmoothMode.FUSION.value,
        help="smoothing mode",
    )
    p.add_argument(
        "--chunk-frames",
        type=POSITIVE_INT,
        default=None,
        metavar="N",
        help="frames per task for long videos (default 1000)",
    )
    add_scheduler(p)


CHUNK_ENV = "NAPARI_DUSTRACK_BATCH_CHUNK_FRAMES"


def settings_from(args):
    """:class:`BatchSettings` from parsed arguments."""
    from ..workers.batch import DEFAULT_CHUNK_FRAMES, BatchSettings

    chunk = args.chunk_frames or os.environ.get(CHUNK_ENV) or DEFAULT_CHUNK_FRAMES
    try:
        chunk = int(chunk)
    except ValueError:
        raise DustrackError(f"chunk size {chunk!r} is not a whole number of frames") from None
    if chunk < 1:
        raise DustrackError(f"chunk size must be at least 1 frame, got {chunk}")
    if args.smooth is not None and args.smooth <= 0:
        raise DustrackError(f"the smoothing window must be positive, got {args.smooth} s")
    return BatchSettings(smooth=args.smooth, mode=args.mode, chunk_frames=chunk)


def run(args) -> None:
    from .. import workers
    from ..workers.batch import SUMMARY, format_summary, run_batch

    settings = settings_from(args)
    try:
        result = run_batch(
            args.videos,
            args.model,
            args.out,
            settings,
            address=args.scheduler,
            progress=BatchProgress(sys.stderr),
        )
    except KeyboardInterrupt:
        print(
            "interrupted: finished chunks are kept; run the same command again to resume",
            file=sys.stderr,
        )
        raise
    finally:
        workers.close_clients()
    summary = result.summary
    print(format_summary(summary))
    done = int((summary["status"] == "done").sum())
    skipped = int((summary["status"] == "skipped").sum())
    print(
        f"{done} done, {skipped} already complete, {len(result.failed)} failed "
        f"in {result.wall_s:.1f} s; summary in {os.path.join(args.out, SUMMARY)}"
    )
    if len(result.failed):
        first = result.failed["reason"].iloc[0]
        raise DustrackError(
            f"{len(result.failed)} of {len(summary)} video(s) failed, first: "
            f"{first} (all reasons in {os.path.join(args.out, SUMMARY)})"
        )
