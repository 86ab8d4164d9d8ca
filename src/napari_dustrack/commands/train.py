"""`napari-dustrack train VIDEO --labels LABELS.csv --model MODEL_DIR [--minutes M]`.

Training runs in a dask worker process; this process reads and checks the inputs, shows
progress and writes nothing itself (the worker writes the model folder atomically).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DustrackError
from ..io.points_io import read_points
from ..tracking.heatmap import HeatmapConfig
from ..tracking.heatmap.dataset import curated_points
from ..tracking.heatmap.store import check_model_folder, has_model, read_meta
from ._args import POSITIVE, add_scheduler, add_video

HELP = "train a U-Net heatmap model on curated frames"
DESTINATION = ("model", True)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack train``."""
    add_video(p)
    p.add_argument("--labels", required=True, help="point table with the manual/reviewed frames")
    p.add_argument("--model", required=True, help="model folder to write (or to continue from)")
    p.add_argument("--minutes", type=POSITIVE, default=None, help="training time budget")
    add_scheduler(p)


def _printer():
    def show(msg: dict) -> None:
        if msg.get("kind") == "log" and "val_error_px" in msg:
            print(
                f"  {msg['seconds']:6.0f} s  step {int(msg['step']):5d}  loss {msg['loss']:.3f}  "
                f"validation error {msg['val_error_px']:.2f} px "
                f"(best {msg['best_val_error_px']:.2f})",
                file=sys.stderr,
                flush=True,
            )

    return show


def run(args) -> None:
    from .. import workers

    video = Path(args.video)
    if not video.exists():
        raise DustrackError("file not found", video)
    check_model_folder(args.model)  # before minutes of training, not after
    table = read_points(args.labels)
    _, labels = curated_points(table, path=args.labels)
    if has_model(args.model):
        meta = read_meta(args.model)
        if sorted(meta["labels"]) != sorted(labels):
            raise DustrackError(
                f"holds a model for labels {meta['labels']}, but {args.labels} has labels "
                f"{labels}; use another model folder",
                args.model,
            )
        print(f"continuing from iteration {meta['iteration']} in {args.model}", file=sys.stderr)
    config = HeatmapConfig() if args.minutes is None else HeatmapConfig(minutes=args.minutes)
    print(
        f"training on {len(labels)} label(s) for up to {config.minutes:g} min...", file=sys.stderr
    )
    job = workers.submit(
        workers.train_task,
        str(video.resolve()),
        table,
        str(Path(args.model).resolve()),
        config.to_dict(),
        address=args.scheduler,
    )
    try:
        meta = job.wait(_printer())
    finally:
        workers.close_clients()
    m = meta["metrics"]
    state = " (cancelled: best checkpoint kept)" if m.get("cancelled") else ""
    print(
        f"saved model iteration {meta['iteration']} to {args.model}{state}: "
        f"{m['n_frames']} frames, {m['steps']} steps in {m['train_seconds']:.0f} s, "
        f"validation error median {m.get('val_error_px', float('nan')):.2f} px"
    )
