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


def run(args) -> None:
    from .. import jobs

    video = Path(args.video)
    if not video.exists():
        raise DustrackError("file not found", video)
    meta = read_meta(args.model)

    def show(msg: dict) -> None:
        if msg.get("kind") == "progress" and msg["total"]:
            print(f"\r  {msg['done']}/{msg['total']} frames", end="", file=sys.stderr, flush=True)

    job = jobs.submit(jobs.predict_task, str(video.resolve()), str(Path(args.model).resolve()),
                      address=args.scheduler)
    try:
        table = job.wait(show)
    finally:
        jobs.close_clients()
    print(file=sys.stderr)
    write_points_csv(table, args.out)
    print(f"wrote {table['frame'].nunique()} frames x {len(meta['labels'])} label(s) to {args.out}")
