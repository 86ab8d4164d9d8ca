"""`napari-dustrack propagate VIDEO --keyframes KEYS.csv --out OUT.csv [--extend N]`.

Fills every frame between the first and last keyframe of each label with LK + RSTC between
consecutive keyframes (``--extend N`` also tracks N frames beyond both ends) and writes a point
table: the keyframes' own rows unchanged (``manual``), filled rows with source ``flow`` and a
confidence. Keyframes are the input's manual or reviewed rows (any format ``read_points``
reads); unreviewed flow/model rows of the input are recomputed, not kept. If the video stops
decoding part-way, the rows computed before the failure are written and the command still fails
with a message saying so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.points_io import read_points, write_points
from ..io.sources import PointSource
from ..io.table import from_array, training_rows, validate
from ..tracking.flow import FlowError, fill_between, keys_from_table
from ._args import COUNT, add_video
from ._progress import terminal_progress

HELP = "fill frames between keyframes with optical flow (LK + RSTC)"
DESTINATION = ("out", False)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack propagate``."""
    add_video(p)
    p.add_argument(
        "--keyframes", required=True, help="point table (CSV/DLC/DUSTrack JSON) of keyframes"
    )
    p.add_argument("--out", required=True, help="output point-table CSV")
    p.add_argument(
        "--extend",
        type=COUNT,
        default=0,
        metavar="N",
        help="also track N frames beyond the first/last keyframe",
    )


def run(args) -> None:
    from ..io.cine import open_frames

    if args.extend < 0:
        raise DustrackError(f"--extend must be >= 0, got {args.extend}")
    table = read_points(args.keyframes)
    everything = len(table)
    # keyframes are what a person placed or accepted; earlier flow/model output is recomputed
    table = training_rows(table).reset_index(drop=True)
    if table.empty:
        raise DustrackError("no keyframes in the file (no manual or reviewed rows)", args.keyframes)
    cine = open_frames(args.video)  # read once, in order: no cache needed
    try:
        keys, labels = keys_from_table(table, len(cine), path=args.keyframes)
        try:
            report: dict = {}
            xy, conf = fill_between(
                cine,
                keys,
                extend=args.extend,
                labels=labels,
                progress=terminal_progress("propagating"),
                report=report,
            )
        except FlowError as exc:
            out = _output_table(table, *exc.partial, labels)
            write_points(out, args.out)
            n_filled = int((out["source"] == PointSource.FLOW).sum())
            raise DustrackError(
                f"{exc.problem}; wrote the {n_filled} point(s) computed before the failure "
                f"(and the keyframes) to {args.out}",
                exc.path or args.video,
            ) from None
    finally:
        cine.close()
    out = _output_table(table, xy, conf, labels)
    write_points(out, args.out)
    filled = out[out["source"] == PointSource.FLOW]
    lost = _count_lost(keys, xy, args.extend)
    print(
        f"{args.out}: {len(filled)} flow point(s) for {len(labels)} label(s) "
        f"(frames {int(out['frame'].min())}..{int(out['frame'].max())}), "
        f"{len(table)} keyframe point(s) kept"
        + (f", {lost} point(s) lost by optical flow (left out)" if lost else "")
        + (
            f"; ignored {everything - len(table)} unreviewed flow/model row(s) of the input"
            if everything > len(table)
            else ""
        )
        + "\n"
        + report["flags"].line("optical flow")
    )


def _count_lost(keys, xy, extend: int) -> int:
    """Frames inside each label's keyframe span (plus ``extend``) left without a position."""
    present = np.isfinite(keys).all(axis=2)
    n = len(keys)
    lost = 0
    for lab in np.flatnonzero(present.any(axis=0)):
        frames = np.flatnonzero(present[:, lab])
        lo, hi = max(frames[0] - extend, 0), min(frames[-1] + extend, n - 1)
        lost += int((~np.isfinite(xy[lo : hi + 1, lab]).all(axis=1)).sum())
    return lost


def _output_table(keyframes: pd.DataFrame, xy, conf, labels) -> pd.DataFrame:
    """The keyframes' own rows plus a ``flow`` row for every other finite position."""
    flow = from_array(xy, labels, source=PointSource.FLOW, confidence=conf)
    keyed = pd.MultiIndex.from_frame(keyframes[["frame", "label"]])
    flow = flow[~pd.MultiIndex.from_frame(flow[["frame", "label"]]).isin(keyed)]
    return validate(pd.concat([keyframes, flow], ignore_index=True))
