"""`napari-dustrack finalize VIDEO --annotations KEYS.csv [--flow FILL.csv] [--model PRED.csv]
[--window 0.5] [--window-frames W] [--no-bias-correction] --out FINAL.csv`.

The final-tracks stage (:func:`napari_dustrack.tracking.final.final_tracks`): the manual and
reviewed rows of ``--annotations`` are kept as they are; the flow fill and the model's
predictions (with their confidences) are weighed frame by frame, the model's systematic error
is measured against the annotations and removed, and the ``fusion`` smoother runs over the
result with the annotations as anchors. Writes the annotations' own rows plus a ``smoothed``
row with a confidence for every other position, and prints the model's measured bias per label
and how many points were left unreliable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.points_io import read_points, write_points
from ..io.sources import PointSource
from ..io.table import from_array, labels_of, to_array, training_rows, validate
from ._args import add_video, window_in_frames
from ._progress import terminal_progress

HELP = "final tracks: annotations kept, flow and model weighed, model bias removed"


def add_arguments(p) -> None:
    """The options of ``napari-dustrack finalize``."""
    add_video(p)
    p.add_argument(
        "--annotations", required=True, help="point table whose manual/reviewed rows are kept"
    )
    p.add_argument("--flow", default=None, help="keyframe fill (point table with confidence)")
    p.add_argument("--model", default=None, help="model predictions (point table with confidence)")
    p.add_argument(
        "--window", type=float, default=0.5, help="smoother window in seconds (default 0.5)"
    )
    p.add_argument(
        "--window-frames",
        type=int,
        default=None,
        help="window in frames (for videos without a frame rate)",
    )
    p.add_argument(
        "--no-bias-correction", action="store_true", help="keep the model's systematic error"
    )
    p.add_argument("--out", required=True, help="output point-table CSV")


def _read(path, n_frames: int, labels):
    """(xy, confidence or None) of a point table for the video, in ``labels``' order."""
    table = read_points(path)
    if table.empty:
        raise DustrackError("no points in the file", path)
    if int(table["frame"].max()) >= n_frames:
        raise DustrackError(
            f"the points reach frame {int(table['frame'].max())} but the video "
            f"has {n_frames} frames; are they for this video?",
            path,
        )
    unknown = sorted(set(labels_of(table)) - set(labels))
    if unknown:
        raise DustrackError(f"label(s) {unknown} are not in the annotations {labels}", path)
    xy, _ = to_array(table, labels, n_frames)
    conf = None
    if "confidence" in table:
        conf, _ = to_array(table, labels, n_frames, column="confidence")
    return xy, conf


def run(args) -> None:
    from ..io.cine import open_frames
    from ..tracking.final import final_tracks

    keys = training_rows(read_points(args.annotations)).reset_index(drop=True)
    if keys.empty:
        raise DustrackError("no manual or reviewed rows to anchor the tracks", args.annotations)
    labels = labels_of(keys)
    cine = open_frames(args.video)
    try:
        n = len(cine)
        window = window_in_frames(args, cine.fps)
        ann, _ = to_array(keys, labels, n)
        flow, flow_c = _read(args.flow, n, labels) if args.flow else (None, None)
        model, model_c = _read(args.model, n, labels) if args.model else (None, None)
        final = final_tracks(
            cine,
            window=window,
            annotations=ann,
            flow=flow,
            flow_confidence=flow_c,
            model=model,
            model_confidence=model_c,
            correct_bias=not args.no_bias_correction,
            labels=labels,
            progress=terminal_progress("final tracks"),
        )
    finally:
        cine.close()
    out = from_array(final.xy, labels, source=PointSource.SMOOTHED, confidence=final.confidence)
    keyed = pd.MultiIndex.from_frame(keys[["frame", "label"]])
    out = out[~pd.MultiIndex.from_frame(out[["frame", "label"]]).isin(keyed)]
    out = validate(pd.concat([keys, out], ignore_index=True))
    write_points(out, args.out)
    lines = [
        f"{args.out}: {len(out)} point(s), {len(labels)} label(s), {len(keys)} annotation(s)"
        f" kept, window {window} frames"
    ]
    if final.bias is not None:
        lines += ["model bias removed: " + line for line in final.bias.lines(labels)]
    lines.append(final.flags.line("final tracks"))
    print("\n".join(lines))
    if not np.isfinite(final.xy).any():
        raise DustrackError("no final positions: the inputs have none", args.annotations)
