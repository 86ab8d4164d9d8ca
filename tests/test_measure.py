"""Measurements against analytic geometry: known shapes moved by known maps, known units."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import from_array
from napari_dustrack.measure import (
    Calibration,
    Measure,
    compute,
    load_measures,
    measures_from_json,
    save_measures,
    sidecar_measures_path,
)

SPACING = (0.2, 0.05)  # (dy, dx) mm: strongly anisotropic on purpose
FPS = 40.0


def to_pixels(xy_mm: np.ndarray, spacing=SPACING) -> np.ndarray:
    """Physical (X, Y) mm -> pixel (x, y)."""
    dy, dx = spacing
    return np.asarray(xy_mm, float) / np.array([dx, dy])


def table_of(xy_mm: np.ndarray, labels, spacing=SPACING, source="model") -> pd.DataFrame:
    return from_array(to_pixels(xy_mm, spacing), labels, source=source)


def rotation(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


# --- distance, area, change, units -----------------------------------------------------------


def test_distance_uses_physical_coordinates_with_anisotropic_pixels():
    # 3-4-5 triangle in mm: 60 px across and 20 px down (dx = 0.05, dy = 0.2).
    a = np.array([[1.0, 2.0]] * 3)
    b = a + np.array([3.0, 4.0]) * np.array([[1.0], [2.0], [0.5]])
    table = table_of(np.stack([a, b], axis=1), ["endo", "epi"])
    result = compute(
        table, [Measure("wall", "distance", ["endo", "epi"])], Calibration(SPACING, FPS)
    )
    np.testing.assert_allclose(result["wall [mm]"], [5.0, 10.0, 2.5], rtol=1e-12)
    np.testing.assert_allclose(result["time [s]"], np.arange(3) / FPS)
    assert list(result.columns) == ["frame", "time [s]", "wall [mm]"]


def test_without_calibration_units_are_pixels_and_frames():
    xy = np.array([[[0.0, 0.0], [6.0, 8.0]], [[0.0, 0.0], [3.0, 4.0]]])
    table = from_array(xy, ["a", "b"])
    m = [Measure("d", "distance", ["a", "b"]), Measure("v", "velocity", ["b"])]
    result = compute(table, m)
    assert list(result.columns) == [
        "frame",
        "d [px]",
        "v vx [px/frame]",
        "v vy [px/frame]",
        "v speed [px/frame]",
    ]
    np.testing.assert_allclose(result["d [px]"], [10.0, 5.0])
    np.testing.assert_allclose(result["v speed [px/frame]"], [5.0, 5.0])
    spacing_only = compute(table, m, Calibration(spacing=(1.0, 2.0)))
    assert "v speed [mm/frame]" in spacing_only and "time [s]" not in spacing_only
    fps_only = compute(table, m, Calibration(fps=10))
    np.testing.assert_allclose(fps_only["v speed [px/s]"], [50.0, 50.0])


@pytest.mark.parametrize("clockwise", [False, True])
def test_polygon_area_of_a_sampled_ellipse_scaled_over_time(clockwise):
    # K vertices of an ellipse (an affine image of a regular K-gon): area = K/2 a b sin(2 pi / K).
    k, a, b = 7, 4.0, 2.5
    phi = np.linspace(0, 2 * np.pi, k, endpoint=False)[:: -1 if clockwise else 1]
    ring = np.stack([a * np.cos(phi), b * np.sin(phi)], axis=1) + [10.0, 12.0]
    s = np.array([1.0, 1.1, 0.8, 1.3])  # uniform scale about the centre
    xy = (ring[None] - [10.0, 12.0]) * s[:, None, None] + [10.0, 12.0]
    labels = [f"p{i}" for i in range(k)]
    cal = Calibration(SPACING, FPS)
    measures = [
        Measure("chamber", "area", labels),
        Measure("chamber rel", "area", labels, change="relative", reference_frame=2),
        Measure("chamber d", "area", labels, change="delta"),
    ]
    result = compute(table_of(xy, labels), measures, cal)
    area0 = k / 2 * a * b * np.sin(2 * np.pi / k)
    np.testing.assert_allclose(result["chamber [mm^2]"], area0 * s**2, rtol=1e-12)
    np.testing.assert_allclose(
        result["chamber rel relative change [-]"], s**2 / s[2] ** 2 - 1, atol=1e-12
    )
    np.testing.assert_allclose(result["chamber d change [mm^2]"], area0 * (s**2 - 1), atol=1e-12)
    assert result.attrs["reference_frames"] == {"chamber": None, "chamber rel": 2, "chamber d": 0}


def test_distance_strain_is_L_over_L0_minus_1_with_first_complete_frame_as_default_reference():
    lengths = np.array([np.nan, 8.0, 10.0, 6.0])
    a = np.zeros((4, 2))
    b = np.stack([lengths * 0.6, lengths * 0.8], axis=1)
    xy = np.stack([a, b], axis=1)
    result = compute(
        table_of(xy, ["a", "b"]),
        [
            Measure("fibre", "distance", ["a", "b"], change="relative"),
            Measure("len", "distance", ["a", "b"], change="delta"),
        ],
        Calibration(SPACING),
    )
    np.testing.assert_allclose(result["fibre strain [-]"], [np.nan, 0.0, 0.25, -0.25])
    np.testing.assert_allclose(result["len change [mm]"], [np.nan, 0.0, 2.0, -2.0])
    assert result.attrs["reference_frames"]["fibre"] == 1


def test_angle_between_segments_and_at_a_vertex():
    n = 5
    truth = np.array([10.0, 45.0, 90.0, 135.0, 170.0])
    base = np.array([[0.0, 0.0], [3.0, 0.0]])  # segment along +x
    other = np.stack([np.cos(np.radians(truth)), np.sin(np.radians(truth))], axis=1) * 2.0
    xy = np.zeros((n, 4, 2))
    xy[:, 0], xy[:, 1] = base
    xy[:, 2] = [5.0, 5.0]
    xy[:, 3] = xy[:, 2] + other
    xy = xy @ rotation(30.0).T  # a common rotation changes no angle
    labels = ["a", "b", "c", "d"]
    vertex = np.stack([xy[:, 1], xy[:, 0], xy[:, 0] + (xy[:, 3] - xy[:, 2])], axis=1)
    table = pd.concat([table_of(xy, labels), table_of(vertex, ["v1", "v0", "v2"])])
    result = compute(
        table,
        [Measure("seg", "angle", labels), Measure("vtx", "angle", ["v1", "v0", "v2"])],
        Calibration(SPACING),
    )
    np.testing.assert_allclose(result["seg [deg]"], truth, atol=1e-9)
    np.testing.assert_allclose(result["vtx [deg]"], truth, atol=1e-9)


def test_anisotropic_spacing_changes_angles_as_physical_geometry_says():
    # 45 degrees in pixels is atan(dy/dx) in millimetres.
    xy_px = np.array([[[0.0, 0.0], [10.0, 0.0], [0.0, 0.0], [10.0, 10.0]]])
    result = compute(
        from_array(xy_px, list("abcd")), [Measure("t", "angle", list("abcd"))], Calibration(SPACING)
    )
    np.testing.assert_allclose(result["t [deg]"], np.degrees(np.arctan2(SPACING[0], SPACING[1])))


# --- velocity --------------------------------------------------------------------------------


def test_velocity_central_differences_exact_for_quadratic_motion():
    t = np.arange(12) / FPS
    pos = np.stack([3.0 + 2.0 * t + 5.0 * t**2, 7.0 - 1.5 * t], axis=1)  # mm
    pos[6] = np.nan  # a gap: neighbours fall back to one-sided differences
    result = compute(
        table_of(pos[:, None], ["p"]), [Measure("p", "velocity", ["p"])], Calibration(SPACING, FPS)
    )
    vx, vy = result["p vx [mm/s]"].to_numpy(), result["p vy [mm/s]"].to_numpy()
    inner = np.array([1, 2, 3, 4, 8, 9, 10])
    np.testing.assert_allclose(vx[inner], 2.0 + 10.0 * t[inner], rtol=1e-9)
    np.testing.assert_allclose(vy[~np.isnan(pos[:, 0])], -1.5, rtol=1e-9)
    dt = 1 / FPS
    np.testing.assert_allclose(vx[[0, 7]], (pos[[1, 8], 0] - pos[[0, 7], 0]) / dt)  # forward
    np.testing.assert_allclose(vx[[5, 11]], (pos[[5, 11], 0] - pos[[4, 10], 0]) / dt)  # backward
    assert np.isnan(vx[6])
    np.testing.assert_allclose(result["p speed [mm/s]"], np.hypot(vx, vy))


# --- deformation -----------------------------------------------------------------------------


def known_deformation(stretch1, stretch2, direction, rot):
    """F = R(rot) U with U stretching by stretch1 along ``direction`` and stretch2 across it."""
    q = rotation(direction)
    return rotation(rot) @ q @ np.diag([stretch1, stretch2]) @ q.T


@pytest.mark.parametrize("strain", ["engineering", "green-lagrange"])
def test_deformation_of_an_ellipse_recovers_the_applied_affine_map(strain):
    phi = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    ref = np.stack([3.0 * np.cos(phi), 1.5 * np.sin(phi)], axis=1) + [8.0, 6.0]
    params = [
        (1.0, 1.0, 0.0, 0.0),
        (1.2, 0.9, 30.0, 5.0),
        (1.05, 0.7, -60.0, -10.0),
        (1.5, 1.1, 80.0, 20.0),
    ]
    Fs = np.array([known_deformation(*p) for p in params])
    shift = np.array([[0, 0], [1.0, -0.5], [2.0, 0.3], [-1.0, 1.0]])
    xy = np.einsum("nij,kj->nki", Fs, ref - ref.mean(0)) + ref.mean(0) + shift[:, None]
    labels = [f"m{i}" for i in range(len(ref))]
    m = Measure("muscle", "deformation", labels, strain=strain)
    res = compute(table_of(xy, labels), [m], Calibration(SPACING, FPS))
    col = lambda name: res[f"muscle {name}"].to_numpy()  # noqa: E731
    s1 = np.array([p[0] for p in params])
    s2 = np.array([p[1] for p in params])
    np.testing.assert_allclose(col("stretch1 [-]"), s1, rtol=1e-9)
    np.testing.assert_allclose(col("stretch2 [-]"), s2, rtol=1e-9)
    if strain == "engineering":
        np.testing.assert_allclose(col("strain1 (engineering) [-]"), s1 - 1, atol=1e-9)
        np.testing.assert_allclose(col("strain2 (engineering) [-]"), s2 - 1, atol=1e-9)
    else:
        np.testing.assert_allclose(col("strain1 (green-lagrange) [-]"), (s1**2 - 1) / 2, atol=1e-9)
        np.testing.assert_allclose(col("strain2 (green-lagrange) [-]"), (s2**2 - 1) / 2, atol=1e-9)
    np.testing.assert_allclose(col("direction1 [deg]")[1:], [p[2] for p in params[1:]], atol=1e-7)
    assert np.isnan(col("direction1 [deg]")[0])  # no deformation, no principal direction
    np.testing.assert_allclose(col("rotation [deg]"), [p[3] for p in params], atol=1e-7)
    np.testing.assert_allclose(col("area change [-]"), s1 * s2 - 1, atol=1e-9)
    np.testing.assert_allclose(col("fit rms [mm]"), 0, atol=1e-9)
    # Normal and shear strains of material lines first along image x and y, from F's columns.
    ex, ey = Fs[:, :, 0], Fs[:, :, 1]
    lx, ly = np.linalg.norm(ex, axis=1), np.linalg.norm(ey, axis=1)
    if strain == "engineering":
        np.testing.assert_allclose(col("strain xx (engineering) [-]"), lx - 1, atol=1e-9)
        np.testing.assert_allclose(col("strain yy (engineering) [-]"), ly - 1, atol=1e-9)
        angle = np.arccos((ex * ey).sum(1) / (lx * ly))
        np.testing.assert_allclose(col("shear xy (engineering) [-]"), np.pi / 2 - angle, atol=1e-9)
    else:
        np.testing.assert_allclose(
            col("strain xx (green-lagrange) [-]"), (lx**2 - 1) / 2, atol=1e-9
        )
        np.testing.assert_allclose(
            col("shear xy (green-lagrange) [-]"), (ex * ey).sum(1) / 2, atol=1e-9
        )
    assert res.attrs["reference_frames"]["muscle"] == 0


def test_deformation_uses_the_points_present_and_needs_three_non_collinear():
    ref = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0], [4.0, 3.0]])
    F = known_deformation(1.3, 0.8, 20.0, 0.0)
    xy = np.stack([ref, ref @ F.T, ref @ F.T, ref @ F.T])
    xy[2, 3] = np.nan  # three points left: still exact
    xy[3, 2:] = np.nan  # two points left: undetermined
    res = compute(
        table_of(xy, list("abcd")),
        [Measure("d", "deformation", list("abcd"))],
        Calibration(SPACING),
    )
    np.testing.assert_allclose(res["d stretch1 [-]"][:3], [1.0, 1.3, 1.3], rtol=1e-9)
    assert np.isnan(res["d stretch1 [-]"][3])
    collinear = np.array([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]] * 2)
    res = compute(from_array(collinear, list("abc")), [Measure("c", "deformation", list("abc"))])
    assert res["c stretch1 [-]"].isna().all()


# --- muscle architecture ---------------------------------------------------------------------


@pytest.mark.parametrize("alpha, beta", [(20.0, 0.0), (15.0, 4.0), (30.0, -3.0)])
def test_fascicle_length_pennation_and_thickness_from_extrapolated_lines(alpha, beta):
    """Deep aponeurosis on Y = 0, superficial on Y = T + X tan(beta), fascicle at alpha."""
    T, x0 = 12.0, 5.0
    ta, ca, sa = np.tan(np.radians(beta)), np.cos(np.radians(alpha)), np.sin(np.radians(alpha))
    length = (T + x0 * ta) / (sa - ca * ta)  # where the fascicle meets the superficial line
    mid_x = x0 + 0.5 * length * ca
    thickness = T + mid_x * ta  # vertical = the deep aponeurosis' normal
    # Fascicle labels inside the muscle (at 30% and 60% of its length): it must be extrapolated.
    f1 = [x0 + 0.3 * length * ca, 0.3 * length * sa]
    f2 = [x0 + 0.6 * length * ca, 0.6 * length * sa]
    sup = [[-10.0, T - 10.0 * ta], [40.0, T + 40.0 * ta]]
    deep = [[-8.0, 0.0], [35.0, 0.0]]
    frame = np.array([f1, f2, *sup, *deep]) * [1.0, -1.0] + [0.0, 30.0]  # image y points down
    labels = ["f1", "f2", "s1", "s2", "d1", "d2"]
    res = compute(
        table_of(frame[None], labels), [Measure("gm", "architecture", labels)], Calibration(SPACING)
    )
    np.testing.assert_allclose(res["gm fascicle length [mm]"], length, rtol=1e-9)
    np.testing.assert_allclose(res["gm pennation angle [deg]"], alpha, atol=1e-9)
    np.testing.assert_allclose(res["gm superficial angle [deg]"], abs(alpha - beta), atol=1e-9)
    np.testing.assert_allclose(res["gm thickness [mm]"], thickness, rtol=1e-9)


def test_architecture_change_over_time_and_parallel_fascicle_is_nan():
    labels = ["f1", "f2", "s1", "s2", "d1", "d2"]

    def frame(alpha):  # noqa: E306
        ca, sa = np.cos(np.radians(alpha)), np.sin(np.radians(alpha))
        return [[2 * ca, 2 * sa], [4 * ca, 4 * sa], [-5, 10], [30, 10], [-5, 0], [30, 0]]

    xy = np.array(
        [frame(a) for a in (20.0, 25.0)] + [[[0, 1], [5, 1], [-5, 10], [30, 10], [-5, 0], [30, 0]]],
        float,
    )
    m = Measure("gm", "architecture", labels, change="relative")
    res = compute(table_of(xy, labels), [m], Calibration(SPACING))
    L = 10 / np.sin(np.radians([20.0, 25.0]))
    np.testing.assert_allclose(
        res["gm fascicle length relative change [-]"][:2], L / L[0] - 1, atol=1e-12
    )
    np.testing.assert_allclose(
        res["gm pennation angle relative change [-]"][:2], [0, 0.25], atol=1e-12
    )
    assert np.isnan(res["gm fascicle length relative change [-]"][2])  # fascicle parallel to both


# --- definitions, JSON and errors ------------------------------------------------------------


def test_measures_json_round_trip_in_the_sidecar(tmp_path):
    video = tmp_path / "scan.mp4"
    measures = [
        Measure("wall", "distance", ["endo", "epi"], change="relative", reference_frame=3),
        Measure("muscle", "deformation", ["a", "b", "c"], strain="green-lagrange"),
        Measure("gm", "architecture", ["f1", "f2", "s1", "s2", "d1", "d2"]),
    ]
    path = sidecar_measures_path(video)
    assert path == tmp_path / "scan.mp4.dustrack" / "measures.json"
    save_measures(measures, path)
    assert load_measures(path) == measures
    content = json.loads(path.read_text())
    assert content["version"] == 1 and content["measures"][0]["labels"] == ["endo", "epi"]
    save_measures(measures[:1], path)  # the previous definitions are kept as .bak
    assert load_measures(path.with_name("measures.json.bak")) == measures
    assert measures_from_json(json.dumps([measures[0].to_dict()])) == measures[:1]


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "malformed JSON"),
        ('{"measures": [{"name": "x", "kind": "volume", "labels": ["a", "b"]}]}', "unknown kind"),
        ('{"measures": [{"name": "x", "kind": "distance", "labels": ["a"]}]}', "needs 2 labels"),
        ('{"measures": [{"name": "x", "kind": "area", "labels": ["a", "b", "a"]}]}', "repeated"),
        (
            '{"measures": [{"name": "x", "kind": "distance", "labels": ["a", "b"], "colour": 1}]}',
            "unknown field",
        ),
        ('{"measures": [{"name": "x", "kind": "distance"}]}', "missing field"),
        (
            '{"measures": [{"name": "x", "kind": "distance", "labels": ["a", "b"], '
            '"change": "log"}]}',
            "change",
        ),
        (
            '{"measures": [{"name": "x", "kind": "distance", "labels": ["a", "b"], '
            '"reference_frame": -1}]}',
            "reference_frame",
        ),
        ('{"version": 9, "measures": []}', "version"),
        (
            '[{"name": "x", "kind": "distance", "labels": ["a", "b"]},'
            ' {"name": "x", "kind": "angle", "labels": ["a", "b", "c"]}]',
            "unique",
        ),
    ],
)
def test_bad_measure_files_give_one_line_errors_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "measures.json"
    path.write_text(content)
    with pytest.raises(DustrackError) as info:
        load_measures(path)
    assert problem in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_labels_and_reference_frames_are_errors():
    table = from_array(
        np.array([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [np.nan, np.nan]]]), ["a", "b"]
    )
    with pytest.raises(DustrackError, match=r"label\(s\) \['c'\] not in the point table"):
        compute(table, [Measure("d", "distance", ["a", "c"])])
    with pytest.raises(
        DustrackError, match="reference frame 1 lacks points; missing there: \\['b'\\]"
    ):
        compute(table, [Measure("d", "distance", ["a", "b"], change="delta", reference_frame=1)])
    # No reference needed: missing frames are NaN, not errors.
    res = compute(table, [Measure("d", "distance", ["a", "b"])])
    assert np.isnan(res["d [px]"][1]) and res["d [px]"][0] == pytest.approx(np.sqrt(2))


def test_same_definitions_recompute_from_any_source():
    xy = np.array([[[0.0, 0.0], [3.0, 4.0]]] * 3) + np.arange(3)[:, None, None]
    m = [Measure("d", "distance", ["a", "b"])]
    results = [
        compute(from_array(xy, ["a", "b"], source=s), m, n_frames=5)
        for s in ("manual", "model", "smoothed")
    ]
    for r in results:
        assert len(r) == 5 and r["d [px]"].isna().sum() == 2
        pd.testing.assert_frame_equal(r, results[0])


def test_calibration_rejects_or_ignores_invalid_values():
    with pytest.raises(ValueError):
        Calibration(spacing=(0.0, 0.1))
    with pytest.raises(ValueError):
        Calibration(fps=float("nan"))
    cal = Calibration.of(spacing=(0.1, float("nan")), fps=0)
    assert cal.spacing is None and cal.fps is None and cal.length_unit == "px"
