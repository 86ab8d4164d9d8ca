"""`napari-dustrack predict VIDEO --model MODEL_DIR --out RAW.csv`.

Prediction runs in a dask worker process; this process checks the inputs and writes the point
table (source ``model``, with ``confidence``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DustrackError
from ..io.table import write_points_csv
from ..tracking.heatmap.store import read_meta
from ._args import add_scheduler, add_video
from ._progress import frames_progress

HELP = "predict every frame with a trained model"
DESTINATION = ("out", False)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack predict``."""
    add_video(p)
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--out", required=True, help="output point-table CSV (with confidence)")
    add_scheduler(p)


def run(args) -> None:
    from .. import workers

    video = Path(args.video)
    if not video.exists():
        raise DustrackError("file not found", video)
    meta = read_meta(args.model)
    job = workers.submit(
        workers.predict_task,
        str(video.resolve()),
        str(Path(args.model).resolve()),
        address=args.scheduler,
    )
    try:
        table = job.wait(frames_progress())
    finally:
        workers.close_clients()
    print(file=sys.stderr)
    write_points_csv(table, args.out)
    print(f"wrote {table['frame'].nunique()} frames x {len(meta['labels'])} label(s) to {args.out}")
