"""`napari-dustrack batch VIDEOS... --model MODEL_DIR --out DIR [--smooth SECONDS]
[--scheduler ADDRESS]`.

Predicts (and smooths) every cine on dask.distributed (see :mod:`napari_dustrack.batch`):
a progress bar on stderr, the summary table on stdout and in ``DIR/summary.csv``. A rerun
skips the videos already complete. Exit status 2 when any video failed, after all others
were processed.
"""

from __future__ import annotations

import os
import sys

from ..errors import DustrackError

CHUNK_ENV = "NAPARI_DUSTRACK_BATCH_CHUNK_FRAMES"


def settings_from(args):
    """:class:`BatchSettings` from parsed arguments."""
    from ..batch import DEFAULT_CHUNK_FRAMES, BatchSettings

    chunk = args.chunk_frames or os.environ.get(CHUNK_ENV) or DEFAULT_CHUNK_FRAMES
    try:
        chunk = int(chunk)
    except ValueError:
        raise DustrackError(f"chunk size {chunk!r} is not a whole number of frames") from None
    if chunk < 1:
        raise DustrackError(f"chunk size must be at least 1 frame, got {chunk}")
    if args.smooth is not None and args.smooth <= 0:
        raise DustrackError(f"the smoothing window must be positive, got {args.smooth} s")
    return BatchSettings(smooth=args.smooth, mode=args.mode,
                         chunk_frames=chunk)


def run(args) -> None:
    from .. import jobs
    from ..batch import SUMMARY, TextProgress, format_summary, run_batch
    settings = settings_from(args)
    try:
        result = run_batch(args.videos, args.model, args.out, settings, address=args.scheduler,
                           progress=TextProgress(sys.stderr))
    except KeyboardInterrupt:
        print("interrupted: finished chunks are kept; run the same command again to resume",
              file=sys.stderr)
        raise
    finally:
        jobs.close_clients()
    summary = result.summary
    print(format_summary(summary))
    done = int((summary["status"] == "done").sum())
    skipped = int((summary["status"] == "skipped").sum())
    print(f"{done} done, {skipped} already complete, {len(result.failed)} failed "
          f"in {result.wall_s:.1f} s; summary in {os.path.join(args.out, SUMMARY)}")
    if len(result.failed):
        first = result.failed["reason"].iloc[0]
        raise DustrackError(f"{len(result.failed)} of {len(summary)} video(s) failed, first: "
                            f"{first} (all reasons in {os.path.join(args.out, SUMMARY)})")
