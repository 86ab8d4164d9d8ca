"""Plane geometry over time, vectorised over frames.

Every function takes physical coordinates: arrays whose last axis is (X, Y) and whose first
axis is the frame. NaN in, NaN out: a frame with a missing point gives NaN, never an error.
Angles are in degrees; the image y axis points down, so a positive angle from +x turns
towards +y (clockwise on screen).
"""

from __future__ import annotations

import numpy as np


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between points ``a`` and ``b`` ``(N, 2)`` -> ``(N,)``."""
    return np.hypot(*(np.asarray(b, float) - np.asarray(a, float)).T)


def polygon_area(points: np.ndarray) -> np.ndarray:
    """Area of the polygon through ``points`` ``(N, K, 2)`` in the given order (shoelace).

    The absolute value: the area does not depend on the direction the vertices turn.
    """
    p = np.asarray(points, float)
    x, y = p[..., 0], p[..., 1]
    cross = x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y
    return 0.5 * np.abs(cross.sum(axis=-1))


def vector_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle between vectors ``u`` and ``v`` ``(N, 2)`` in degrees, 0..180."""
    u, v = np.asarray(u, float), np.asarray(v, float)
    cross = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    dot = (u * v).sum(axis=1)
    angle = np.degrees(np.abs(np.arctan2(cross, dot)))  # atan2 keeps precision near 0 and 180
    zero = (np.hypot(*u.T) == 0) | (np.hypot(*v.T) == 0)
    return np.where(zero, np.nan, angle)


def line_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Acute angle between the lines along ``u`` and ``v`` in degrees, 0..90."""
    angle = vector_angle(u, v)
    return np.minimum(angle, 180.0 - angle)


def intersect_lines(p1, p2, q1, q2) -> np.ndarray:
    """Intersection of the line through ``p1, p2`` with the line through ``q1, q2``.

    Lines are infinite (this is what extrapolates a fascicle to an aponeurosis). Parallel or
    degenerate lines give NaN.
    """
    p1, p2, q1, q2 = (np.asarray(a, float) for a in (p1, p2, q1, q2))
    r, s = p2 - p1, q2 - q1
    denom = r[:, 0] * s[:, 1] - r[:, 1] * s[:, 0]
    qp = q1 - p1
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / denom
    scale = np.hypot(*r.T) * np.hypot(*s.T)
    t = np.where(np.abs(denom) <= 1e-12 * np.where(scale > 0, scale, 1.0), np.nan, t)
    return p1 + t[:, None] * r


def point_line_foot(p, a, b) -> np.ndarray:
    """Foot of the perpendicular from ``p`` to the line through ``a, b``."""
    p, a, b = (np.asarray(v, float) for v in (p, a, b))
    d = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((p - a) * d).sum(axis=1) / (d * d).sum(axis=1)
    return a + t[:, None] * d


def fit_affine(ref: np.ndarray, cur: np.ndarray, min_points: int = 3):
    """Least-squares affine map ``cur ~ F @ ref + c`` for each frame.

    Parameters
    ----------
    ref : ndarray (K, 2)
        Reference positions.
    cur : ndarray (N, K, 2)
        Positions in each frame; points that are NaN in a frame (or in ``ref``) are left out
        of that frame's fit.
    min_points : int
        Fewer usable points than this (or collinear points) give NaN for the frame.

    Returns
    -------
    F : ndarray (N, 2, 2)
        Deformation gradient of each frame.
    rms : ndarray (N,)
        Root-mean-square residual of the fit (same unit as the coordinates).
    """
    ref = np.asarray(ref, float)
    cur = np.asarray(cur, float)
    n = cur.shape[0]
    F = np.full((n, 2, 2), np.nan)
    rms = np.full(n, np.nan)
    ref_ok = np.isfinite(ref).all(axis=1)
    usable = ref_ok[None] & np.isfinite(cur).all(axis=2)  # (N, K)
    # Frames sharing a set of usable points share one pseudo-inverse: one fit per set, not frame.
    sets, which = np.unique(usable, axis=0, return_inverse=True)
    for s, ok in enumerate(sets):
        frames = np.flatnonzero(np.ravel(which) == s)
        if ok.sum() < min_points:
            continue
        X = ref[ok] - ref[ok].mean(axis=0)
        # Collinear reference points leave the map undetermined across the line.
        sv = np.linalg.svd(X, compute_uv=False)
        if sv[-1] <= 1e-9 * max(sv[0], 1e-300):
            continue
        x = cur[frames][:, ok] - cur[frames][:, ok].mean(axis=1, keepdims=True)  # (n, k, 2)
        M = np.einsum("ij,njd->nid", np.linalg.pinv(X), x)  # x ~ X @ M, so F = M^T
        F[frames] = np.swapaxes(M, 1, 2)
        resid = np.einsum("kj,njd->nkd", X, M) - x
        rms[frames] = np.sqrt((resid**2).sum(axis=2).mean(axis=1))
    return F, rms


def principal_stretches(F: np.ndarray) -> dict[str, np.ndarray]:
    """Decompose deformation gradients ``(N, 2, 2)``.

    Returns
    -------
    dict
        ``stretch1 >= stretch2`` (principal stretches, square roots of the eigenvalues of the
        right Cauchy-Green tensor C = F^T F); ``direction1`` the reference-frame direction of
        ``stretch1`` in degrees from +x, in (-90, 90] (``stretch2`` is perpendicular to it;
        NaN when the stretches are equal);
        ``C`` (N, 2, 2); ``J`` = det F (area ratio); ``rotation`` of the polar decomposition
        F = R U in degrees.
    """
    F = np.asarray(F, float)
    n = F.shape[0]
    out = {k: np.full(n, np.nan) for k in ("stretch1", "stretch2", "direction1", "J", "rotation")}
    C = np.einsum("nki,nkj->nij", F, F)
    out["C"] = C
    ok = np.isfinite(F).all(axis=(1, 2))
    if not ok.any():
        return out
    w, v = np.linalg.eigh(C[ok])  # ascending eigenvalues
    out["stretch1"][ok] = np.sqrt(np.clip(w[:, 1], 0, None))
    out["stretch2"][ok] = np.sqrt(np.clip(w[:, 0], 0, None))
    ang = np.degrees(np.arctan2(v[:, 1, 1], v[:, 0, 1]))
    # Equal stretches (no deformation, pure dilation) have no principal direction.
    isotropic = w[:, 1] - w[:, 0] <= 1e-9 * np.maximum(w[:, 1], 1e-300)
    out["direction1"][ok] = np.where(isotropic, np.nan, _half_turn(ang))
    out["J"][ok] = np.linalg.det(F[ok])
    # Rotation of F = R U: the angle of R, from F's columns via the closest rotation (2-D polar).
    a = F[ok, 0, 0] + F[ok, 1, 1]
    b = F[ok, 1, 0] - F[ok, 0, 1]
    out["rotation"][ok] = np.degrees(np.arctan2(b, a))
    return out


def _half_turn(angle_deg: np.ndarray) -> np.ndarray:
    """Map an undirected axis angle to (-90, 90]."""
    a = np.mod(angle_deg + 90.0, 180.0) - 90.0
    return np.where(a == -90.0, 90.0, a)


def central_velocity(xy: np.ndarray, dt: float = 1.0) -> np.ndarray:
    """Velocity ``(N, 2)`` of a trajectory ``(N, 2)`` by central differences.

    ``(p[t+1] - p[t-1]) / (2 dt)`` inside, one-sided differences at the ends and next to
    gaps; NaN where the point itself is missing or has no neighbour.
    """
    p = np.asarray(xy, float)
    n = len(p)
    v = np.full_like(p, np.nan)
    if n < 2:
        return v
    ok = np.isfinite(p).all(axis=1)
    prev_ok = np.r_[False, ok[:-1]]
    next_ok = np.r_[ok[1:], False]
    prev = np.vstack([np.full((1, 2), np.nan), p[:-1]])
    nxt = np.vstack([p[1:], np.full((1, 2), np.nan)])
    both = ok & prev_ok & next_ok
    fwd = ok & next_ok & ~prev_ok
    bwd = ok & prev_ok & ~next_ok
    v[both] = (nxt[both] - prev[both]) / (2 * dt)
    v[fwd] = (nxt[fwd] - p[fwd]) / dt
    v[bwd] = (p[bwd] - prev[bwd]) / dt
    return v
