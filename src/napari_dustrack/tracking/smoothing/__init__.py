"""The optical-flow windowed smoother (no Qt, no napari).

``smooth(frames, xy, window, mode)`` removes frame-to-frame jitter from per-frame estimates
(N, L, 2) while keeping the real motion the video shows. Modes:

- ``"dustrack"``: DUSTrack's ``lk_moving_average_filter`` (the same numbers), computed with
  each frame pair handled once per direction (:mod:`.windows`).
- ``"fast"``: the same windowed average, with window points moved by a local LK motion field
  per label (cost independent of the window length; :mod:`.motion`).
- ``"fusion"`` (default): estimates as measurements + flow as motion model, robust
  least squares (:mod:`.fusion`).

Gaps split tracks, labels are independent, and the image work splits into chunks
(:func:`plan_chunks`, :func:`run_chunk`, :func:`combine_chunks`) with the same result as one pass;
``workers.smoothing.smooth_chunked`` runs the chunks on dask.distributed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ...errors import DustrackError
from ..lk import LKParams
from ..modes import SMOOTH_MODES, SmoothMode
from .baselines import kalman_rts, savgol, segments
from .chunks import Chunk, fields_chunk, plan_chunks, run_chunk
from .fusion import FusionParams, fuse_segment
from .motion import Grid, auto_grid, reference_positions
from .windows import accumulate, accumulate_translation, dustrack_chunk, field_steppers, finish

MODES = SMOOTH_MODES  # the first is the default

__all__ = [
    "MODES",
    "SmoothMode",
    "smooth",
    "StepCounter",
    "combine_chunks",
    "run_chunk",
    "plan_chunks",
    "Chunk",
    "check_inputs",
    "window_frames",
    "FusionParams",
    "Grid",
    "savgol",
    "kalman_rts",
]


def window_frames(
    seconds: float | None, fps: float | None, frames: int | None = None, path=None
) -> int:
    """The window in frames: ``frames`` if given, else ``round(seconds * fps)``."""
    if frames is not None:
        if frames < 2:
            raise DustrackError(f"the window must be at least 2 frames, got {frames}", path)
        return int(frames)
    if not fps:
        raise DustrackError(
            "the video has no frame rate; give the window in frames (frames=)", path
        )
    w = int(round(seconds * fps))
    if w < 2:
        raise DustrackError(
            f"a {seconds} s window is {w} frame(s) at {fps:g} fps; it must be at least 2 frames",
            path,
        )
    return w


def check_inputs(
    n_video: int,
    xy: np.ndarray,
    window: int,
    mode: str,
    confidence: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    path=None,
) -> np.ndarray:
    """Validate the smoother's input; returns ``xy`` as float64. Raises DustrackError."""
    xy = np.asarray(xy, dtype=np.float64)
    if mode not in MODES:
        raise DustrackError(
            f"unknown smoothing mode {mode!r} (choose from {', '.join(MODES)})", path
        )
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise DustrackError(f"tracks must be (frames, labels, 2), got shape {xy.shape}", path)
    if xy.shape[0] != n_video:
        raise DustrackError(
            f"the tracks cover {xy.shape[0]} frames but the video has {n_video}", path
        )
    if window < 2:
        raise DustrackError(f"the window must be at least 2 frames, got {window}", path)
    if xy.shape[0] < window:
        raise DustrackError(
            f"the tracks have {xy.shape[0]} frames, fewer than the window of "
            f"{window} frames; use a shorter window",
            path,
        )
    names = list(labels) if labels is not None else [str(i) for i in range(xy.shape[1])]
    empty = [names[i] for i in range(xy.shape[1]) if not np.isfinite(xy[:, i]).all(axis=1).any()]
    if empty:
        raise DustrackError(
            f"label(s) {', '.join(map(repr, empty))} have no positions to smooth", path
        )
    if confidence is not None and np.shape(confidence) != xy.shape[:2]:
        raise DustrackError(
            f"confidence must be (frames, labels) = {xy.shape[:2]}, got {np.shape(confidence)}",
            path,
        )
    return xy


class StepCounter:
    """``progress(done, total)`` called as steps are counted (``tick(n)``); never past ``total``."""

    def __init__(self, progress, total):
        self.progress, self.total, self.done = progress, max(int(total), 1), 0

    def __call__(self, n: int = 1):
        self.done += n
        if self.progress:
            self.progress(min(self.done, self.total), self.total)


def _total_steps(plan: list[Chunk], mode: str, window: int) -> int:
    if mode == SmoothMode.DUSTRACK:
        return sum(2 * (c.stop - c.start + window - 1) for c in plan)
    return sum(c.stop - c.start for c in plan)


def smooth(
    frames,
    xy: np.ndarray,
    window: int,
    mode: str = SmoothMode.FUSION,
    *,
    confidence: np.ndarray | None = None,
    params: LKParams = LKParams(),
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    labels: Sequence[str] | None = None,
    grid: Grid | None = None,
    fusion: FusionParams = FusionParams(),
    chunk_frames: int | None = None,
    anchors: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth tracks with optical flow.

    Parameters
    ----------
    frames : sequence of 2-D frames
        Anything with ``len()`` and ``frames[i]`` (numpy/dask array, Cine); read in order.
    xy : (N, L, 2)
        Positions (x, y) per frame and label; NaN where missing (gaps split the track).
    window : int
        Window length in frames.
    mode : SmoothMode or its value, {"fusion", "dustrack", "fast"}
    confidence : (N, L), optional
        Weights of the estimates (used by ``fusion``).
    progress : callable, optional
        ``progress(done, total)``.
    cancel : threading.Event, optional
        When set, :class:`~napari_dustrack.errors.Cancelled` is raised.
    labels : sequence of str, optional
        Label names for error messages.
    grid : Grid, optional
        How ``fast``/``fusion`` sample the motion around a label; default
        :func:`.motion.auto_grid` (one point for ``fast``, four averaged for ``fusion``, on the
        frames shrunk to the speckle's scale).
    chunk_frames : int, optional
        Process the image work in chunks of about this many frames (sequentially here; see
        ``workers.smoothing.smooth_chunked`` for parallel chunks).
    anchors : (N, L) bool, optional
        Positions to keep (accepted annotations: ``manual``, ``reviewed``); ``fusion`` passes
        within a small fraction of a pixel of them, ``dustrack``/``fast`` return them as given.

    Returns
    -------
    (N, L, 2) smoothed positions; NaN where the input is NaN. In ``dustrack``/``fast`` the frames
    of a segment shorter than the window keep their input.
    """
    xy = check_inputs(len(frames), xy, window, mode, confidence, labels)
    anchors = _check_anchors(anchors, xy)
    shape = np.shape(frames[0])[:2] if mode == SmoothMode.DUSTRACK else None
    plan = plan_chunks(len(xy), window, mode, chunk_frames, shape)
    tick = StepCounter(progress, _total_steps(plan, mode, window))
    if mode == SmoothMode.DUSTRACK:
        sums, counts = np.zeros(xy.shape), np.zeros(xy.shape[:2], dtype=np.int64)
        cache: dict = {}
        for c in plan:
            s, n, cache = dustrack_chunk(
                frames, xy, window, c.start, c.stop, params, cache, tick, cancel
            )
            sums[c.first : c.last + 1] += s
            counts[c.first : c.last + 1] += n
        return _keep(finish(xy, sums, counts), xy, anchors)
    ref = reference_positions(xy)
    grid = auto_grid(frames, mode, grid)
    parts = [fields_chunk(frames, ref, c, params, grid, tick, cancel) for c in plan]
    return combine_fields(xy, ref, parts, window, mode, confidence, grid, fusion, anchors)


def _check_anchors(anchors, xy):
    if anchors is None:
        return None
    anchors = np.asarray(anchors, bool)
    if anchors.shape != xy.shape[:2]:
        raise DustrackError(
            f"anchors must be (frames, labels) = {xy.shape[:2]}, got {anchors.shape}"
        )
    return anchors & np.isfinite(xy).all(axis=2)


def _keep(out, xy, anchors):
    """Anchored positions as given (modes without measurement weights)."""
    if anchors is not None:
        out[anchors] = xy[anchors]
    return out


def combine_fields(
    xy,
    ref,
    parts,
    window,
    mode,
    confidence=None,
    grid: Grid = Grid(),
    fusion: FusionParams = FusionParams(),
    anchors=None,
) -> np.ndarray:
    """Smoothed tracks from the per-chunk flow fields of ``fast``/``fusion`` (chunk order).

    ``ref`` is :func:`motion.reference_positions` of ``xy``; ``parts`` are the fields that
    :func:`chunks.fields_chunk` returns for each planned chunk, wherever they were computed
    (this process or dask workers).
    """
    fields = np.concatenate(parts)
    if mode == SmoothMode.FAST:
        if fields.shape[2] == 1:  # the label moves as a whole: closed form over the shifts
            fallback = np.nan_to_num(np.diff(ref, axis=0))
            disp = fields[:, :, 0].astype(np.float64)
            disp = np.where(np.isfinite(disp), disp, fallback)
            sums, counts = accumulate_translation(xy, window, disp)
        else:
            step_f, step_b = field_steppers(fields, ref, grid)
            sums, counts = accumulate(xy, window, 0, len(xy) - window + 1, step_f, step_b)
        return _keep(finish(xy, sums, counts), xy, anchors)
    out = np.array(xy, copy=True)
    for lab in range(xy.shape[1]):
        for a, b in segments(np.isfinite(xy[:, lab]).all(axis=1)):
            conf = None if confidence is None else np.asarray(confidence, float)[a:b, lab]
            anch = None if anchors is None else anchors[a:b, lab]
            out[a:b, lab] = fuse_segment(
                xy[a:b, lab],
                fields[a : b - 1, lab],
                ref[a:b, lab],
                window,
                conf,
                fusion,
                grid,
                anch,
            )
    return out


def combine_chunks(
    xy,
    plan,
    results,
    window: int,
    mode: str,
    confidence=None,
    ref=None,
    grid: Grid = Grid(),
    fusion: FusionParams = FusionParams(),
    *,
    anchors: np.ndarray | None = None,
) -> np.ndarray:
    """The smoothed tracks from the chunks' image work, wherever the chunks ran.

    ``results`` are what :func:`chunks.run_chunk` returned for each chunk of ``plan``: window
    sums and counts (``dustrack``) or flow fields (``fast``, ``fusion``; ``ref`` defaults to
    :func:`motion.reference_positions` of ``xy``); ``anchors`` as in :func:`smooth`.
    """
    xy = np.asarray(xy, dtype=np.float64)
    anchors = _check_anchors(anchors, xy)
    if mode == SmoothMode.DUSTRACK:
        sums, counts = np.zeros(xy.shape), np.zeros(xy.shape[:2], dtype=np.int64)
        for c, (s, n) in zip(plan, results, strict=False):
            sums[c.first : c.last + 1] += s
            counts[c.first : c.last + 1] += n
        return _keep(finish(xy, sums, counts), xy, anchors)
    ref = reference_positions(xy) if ref is None else ref
    return combine_fields(
        xy, ref, [r[0] for r in results], window, mode, confidence, grid, fusion, anchors
    )
