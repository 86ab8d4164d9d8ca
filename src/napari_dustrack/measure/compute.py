"""Compute measures over time from a point table.

The result is a tidy table: one row per frame, columns ``frame``, ``time [s]`` (when the frame
rate is known) and one or more columns per measure, each name ending in its unit, e.g.
``wall [mm]``, ``chamber relative change [-]``, ``muscle strain1 (engineering) [-]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.table import to_array
from . import geometry as geo
from .definitions import Measure
from .units import Calibration

Outputs = list[tuple[str, np.ndarray, str]]  # (output name or "", values (N,), unit)


def compute(
    table: pd.DataFrame,
    measures: Iterable[Measure],
    calibration: Calibration | None = None,
    n_frames: int | None = None,
) -> pd.DataFrame:
    """Every measure at every frame of ``table``.

    Parameters
    ----------
    table : DataFrame
        A point table of any source, as :func:`napari_dustrack.io.points_io.read_points` or
        :func:`napari_dustrack.io.table.validate` return it (not validated again here).
    measures : iterable of Measure
    calibration : Calibration, optional
        Pixel spacing and frame rate; without them lengths are in px and time in frames.
    n_frames : int, optional
        Number of frames of the video (default: the last frame in the table + 1).

    Returns
    -------
    DataFrame
        Columns ``frame``, ``time [s]`` (with a frame rate) and the measures' columns; NaN where
        a point is missing. ``result.attrs["reference_frames"]`` maps measure names to the
        reference frame used (None when none was needed).
    """
    calibration = calibration or Calibration()
    measures = list(measures)
    missing_cols = [c for c in ("frame", "label", "x", "y") if c not in table.columns]
    if missing_cols:
        raise DustrackError(f"not a point table: missing column(s) {', '.join(missing_cols)}")
    if n_frames is None:
        n_frames = int(table["frame"].max()) + 1 if len(table) else 0
    phys, index = _all_positions(table, measures, calibration, n_frames)
    refs, columns = {}, {}
    for m in measures:
        xy = phys[:, [index[lab] for lab in m.labels]]
        outputs, refs[m.name] = measure_values(m, xy, calibration)
        columns.update(outputs)
    # One concat, not a column at a time: many measures would fragment the frame.
    result = pd.concat([time_axis(n_frames, calibration), pd.DataFrame(columns)], axis=1)
    result.attrs["reference_frames"] = refs
    return result


def _all_positions(table, measures, calibration, n_frames) -> tuple[np.ndarray, dict[str, int]]:
    """Physical positions ``(n_frames, L, 2)`` of every label a measure uses, read once."""
    present = set(table["label"].unique())
    for m in measures:
        missing = [lab for lab in m.labels if lab not in present]
        if missing:
            raise DustrackError(f"measure {m.name!r}: label(s) {missing} not in the point table")
    needed = list(dict.fromkeys(lab for m in measures for lab in m.labels))
    xy, _ = to_array(table, needed, n_frames)
    return calibration.to_physical(xy), {lab: i for i, lab in enumerate(needed)}


def time_axis(n_frames: int, calibration: Calibration) -> pd.DataFrame:
    """The ``frame`` (and ``time [s]``) columns."""
    frames = np.arange(int(n_frames))
    out = pd.DataFrame({"frame": frames})
    if calibration.time_column():
        out[calibration.time_column()] = frames * calibration.frame_interval
    return out


def measure_values(
    measure: Measure, xy: np.ndarray, calibration: Calibration
) -> tuple[dict[str, np.ndarray], int | None]:
    """Columns of one measure from physical positions ``(N, L, 2)`` in label order.

    Returns ``({column name: values}, reference frame used or None)``.
    """
    needs_ref = measure.kind == "deformation" or (
        measure.change != "none" and measure.kind != "velocity"
    )
    ref = reference_frame(measure, xy) if needs_ref else None
    if measure.kind == "deformation":
        outputs = _deformation(xy, ref, calibration, measure.strain)
    elif measure.kind == "velocity":
        outputs = _velocity(xy, calibration)
    else:
        outputs = _apply_change(measure, _SCALARS[measure.kind](xy, calibration), ref)
    columns = {}
    for output, values, unit in outputs:
        columns[" ".join(p for p in (measure.name, output) if p) + f" [{unit}]"] = values
    return columns, ref


def reference_frame(measure: Measure, xy: np.ndarray) -> int:
    """The measure's reference frame: the one it names, else the first with all its points."""
    complete = np.isfinite(xy).all(axis=(1, 2))
    if measure.reference_frame is None:
        if not complete.any():
            raise DustrackError(
                f"measure {measure.name!r}: no frame has all of {measure.labels}, "
                "so there is no reference frame"
            )
        return int(np.argmax(complete))
    ref = measure.reference_frame
    if ref >= len(xy) or not complete[ref]:
        have = "" if ref >= len(xy) else f"; missing there: {_missing_at(measure, xy, ref)}"
        raise DustrackError(f"measure {measure.name!r}: reference frame {ref} lacks points{have}")
    return ref


def _missing_at(measure: Measure, xy: np.ndarray, frame: int) -> list[str]:
    return [
        lab
        for lab, ok in zip(measure.labels, np.isfinite(xy[frame]).all(axis=1), strict=False)
        if not ok
    ]


def _apply_change(measure: Measure, outputs: Outputs, ref: int | None) -> Outputs:
    if measure.change == "none":
        return outputs
    changed = []
    for output, values, unit in outputs:
        v0 = values[ref]
        if measure.change == "delta":
            changed.append((f"{output} change".strip(), values - v0, unit))
        else:
            word = "strain" if measure.kind == "distance" else "relative change"
            with np.errstate(divide="ignore", invalid="ignore"):
                changed.append((f"{output} {word}".strip(), values / v0 - 1.0, "-"))
    return changed


def _distance(xy, cal: Calibration) -> Outputs:
    return [("", geo.distance(xy[:, 0], xy[:, 1]), cal.length_unit)]


def _area(xy, cal: Calibration) -> Outputs:
    return [("", geo.polygon_area(xy), cal.area_unit)]


def _angle(xy, cal: Calibration) -> Outputs:
    if xy.shape[1] == 3:  # angle at the middle point
        u, v = xy[:, 0] - xy[:, 1], xy[:, 2] - xy[:, 1]
    else:
        u, v = xy[:, 1] - xy[:, 0], xy[:, 3] - xy[:, 2]
    return [("", geo.vector_angle(u, v), "deg")]


def _architecture(xy, cal: Calibration) -> Outputs:
    """Fascicle length and pennation from a fascicle line and two aponeurosis lines.

    The fascicle line is extended to meet each aponeurosis line; its length is the distance
    between those two intersections. Pennation is the acute angle between the fascicle and the
    deep aponeurosis (and, separately, the superficial one). Thickness is the distance between
    the aponeurosis lines along the deep aponeurosis' normal through the fascicle's midpoint.
    """
    f1, f2, s1, s2, d1, d2 = (xy[:, i] for i in range(6))
    on_sup = geo.intersect_lines(f1, f2, s1, s2)
    on_deep = geo.intersect_lines(f1, f2, d1, d2)
    fascicle = geo.distance(on_sup, on_deep)
    pennation = geo.line_angle(f2 - f1, d2 - d1)
    sup_angle = geo.line_angle(f2 - f1, s2 - s1)
    mid = 0.5 * (on_sup + on_deep)
    foot_deep = geo.point_line_foot(mid, d1, d2)
    deep_dir = d2 - d1
    normal = np.stack([-deep_dir[:, 1], deep_dir[:, 0]], axis=1)
    foot_sup = geo.intersect_lines(foot_deep, foot_deep + normal, s1, s2)
    thickness = geo.distance(foot_deep, foot_sup)
    unit = cal.length_unit
    return [
        ("fascicle length", fascicle, unit),
        ("pennation angle", pennation, "deg"),
        ("superficial angle", sup_angle, "deg"),
        ("thickness", thickness, unit),
    ]


_SCALARS: dict[str, Callable[[np.ndarray, Calibration], Outputs]] = {
    "distance": _distance,
    "area": _area,
    "angle": _angle,
    "architecture": _architecture,
}


def _velocity(xy, cal: Calibration) -> Outputs:
    v = geo.central_velocity(xy[:, 0], cal.frame_interval)
    unit = cal.velocity_unit
    return [
        ("vx", v[:, 0], unit),
        ("vy", v[:, 1], unit),
        ("speed", np.hypot(v[:, 0], v[:, 1]), unit),
    ]


def _deformation(xy, ref: int, cal: Calibration, strain: str) -> Outputs:
    """Affine fit to the reference frame -> principal stretches, strains, shear, area change.

    ``engineering``: principal strains stretch - 1, normal strains along x/y are the stretch of
    material lines first along x/y minus 1, shear is the decrease of the right angle between
    those lines (radians). ``green-lagrange``: E = (F^T F - I) / 2, principal values
    (stretch^2 - 1) / 2, components E_xx, E_yy and E_xy.
    """
    F, rms = geo.fit_affine(xy[ref], xy)
    p = geo.principal_stretches(F)
    C = p["C"]
    if strain == "engineering":
        e1, e2 = p["stretch1"] - 1, p["stretch2"] - 1
        exx, eyy = np.sqrt(C[:, 0, 0]) - 1, np.sqrt(C[:, 1, 1]) - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            shear = np.arcsin(np.clip(C[:, 0, 1] / np.sqrt(C[:, 0, 0] * C[:, 1, 1]), -1, 1))
    else:
        e1, e2 = (p["stretch1"] ** 2 - 1) / 2, (p["stretch2"] ** 2 - 1) / 2
        exx, eyy, shear = (C[:, 0, 0] - 1) / 2, (C[:, 1, 1] - 1) / 2, C[:, 0, 1] / 2
    tag = f"({strain})"
    return [
        ("stretch1", p["stretch1"], "-"),
        ("stretch2", p["stretch2"], "-"),
        (f"strain1 {tag}", e1, "-"),
        (f"strain2 {tag}", e2, "-"),
        ("direction1", p["direction1"], "deg"),
        (f"strain xx {tag}", exx, "-"),
        (f"strain yy {tag}", eyy, "-"),
        (f"shear xy {tag}", shear, "-"),
        ("area change", p["J"] - 1, "-"),
        ("rotation", p["rotation"], "deg"),
        ("fit rms", rms, cal.length_unit),
    ]
