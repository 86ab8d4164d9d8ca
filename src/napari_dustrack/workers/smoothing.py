"""Chunked smoothing on dask.distributed: the driver of :mod:`napari_dustrack.tracking.smoothing`'s
pure chunk functions (plan, run, combine), kept here so that ``tracking/`` knows no scheduler."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import raise_if_cancelled
from ..tracking.lk import LKParams
from ..tracking.modes import SmoothMode
from ..tracking.smoothing import StepCounter, check_inputs, combine_chunks, plan_chunks, run_chunk
from ..tracking.smoothing.chunks import frames_of, task_source
from ..tracking.smoothing.fusion import FusionParams
from ..tracking.smoothing.motion import Grid, auto_grid, reference_positions

__all__ = ["smooth_chunked"]


def smooth_chunked(
    frames,
    xy: np.ndarray,
    window: int,
    mode: str = SmoothMode.FUSION,
    *,
    confidence: np.ndarray | None = None,
    params: LKParams = LKParams(),
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
    client=None,
    chunk_frames: int = 500,
    labels: Sequence[str] | None = None,
    grid: Grid | None = None,
    fusion: FusionParams = FusionParams(),
    anchors: np.ndarray | None = None,
) -> np.ndarray:
    """``tracking.smoothing.smooth`` with the image work split into chunks run as
    dask.distributed tasks.

    ``frames`` is a frames object or a video path; workers open the video themselves when it
    has a path, otherwise they receive their chunk's frames. Without ``client`` the chunks run
    here one after the other. The result equals ``smooth``'s, ``anchors`` included
    (``fast``/``fusion`` exactly, ``dustrack`` up to floating-point summation order, ~1e-12 px).
    """
    if isinstance(frames, (str, bytes)) or hasattr(frames, "__fspath__"):
        frames = frames_of(frames)
    xy = check_inputs(len(frames), xy, window, mode, confidence, labels)
    plan = plan_chunks(len(xy), window, mode, chunk_frames)
    payload = xy if mode == SmoothMode.DUSTRACK else reference_positions(xy)
    grid = Grid() if mode == SmoothMode.DUSTRACK else auto_grid(frames, mode, grid)
    tick = StepCounter(progress, len(plan))
    if client is None:
        results = []
        for c in plan:
            raise_if_cancelled(cancel)
            source, first = task_source(frames, c)
            results.append(run_chunk(source, first, mode, c, payload, window, params, grid))
            tick()
    else:
        results = _gather(client, frames, plan, mode, payload, window, params, grid, tick, cancel)
    return combine_chunks(
        xy, plan, results, window, mode, confidence, payload, grid, fusion, anchors=anchors
    )


def _gather(client, frames, plan, mode, payload, window, params, grid, tick, cancel):
    from distributed import as_completed

    payload_f = client.scatter(payload, broadcast=True)
    futures = []
    for c in plan:
        source, first = task_source(frames, c)
        futures.append(
            client.submit(
                run_chunk, source, first, mode, c, payload_f, window, params, grid, pure=False
            )
        )
    try:
        for _ in as_completed(futures):
            tick()
            raise_if_cancelled(cancel)
        return client.gather(futures)
    finally:
        for f in futures:
            f.cancel()
