"""Chunk planning and the per-chunk image work, so long videos can run on dask workers.

Only the image work is chunked; what follows it is cheap arithmetic on the driver:

- ``dustrack``: a chunk is a range of window starts ``[s0, s1)``; it reads frames
  ``s0 .. s1 + W - 2`` (W - 1 frames overlap the next chunk) and returns the sums and counts
  of its windows' blended paths. Adding the chunks' sums gives the one-pass sums.
- ``fast``/``fusion``: a chunk is a range of frame pairs ``[a, b)``; it reads frames
  ``a .. b`` (one frame overlaps the next chunk) and returns the grid motion fields of its
  pairs, which are exactly those of one pass (each pair depends only on its two frames and the
  reference positions). The window average / the fusion solve then runs once on all fields.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ...errors import raise_if_cancelled
from .._frames import FrameView, read_ahead
from ..lk import LKParams
from ..modes import SmoothMode
from .motion import Grid, pair_fields
from .scale import shrink_frame
from .windows import dustrack_chunk

FRAME_BUDGET = 256 * 2**20  # bytes of grayscale frames a dustrack chunk may hold


@dataclass(frozen=True)
class Chunk:
    """One unit of image work: window starts (``dustrack``) or frame pairs (``fast``/``fusion``)
    ``[start, stop)``, reading frames ``first .. last`` inclusive."""

    start: int
    stop: int
    first: int
    last: int


def plan_chunks(
    n_frames: int,
    window: int,
    mode: str,
    chunk_frames: int | None = None,
    frame_shape: tuple[int, int] | None = None,
) -> list[Chunk]:
    """Split the image work of one video into chunks of about ``chunk_frames`` frames.

    Without ``chunk_frames``, ``fast``/``fusion`` use one chunk (they stream frames) and
    ``dustrack`` chunks so that a chunk's frames fit in :data:`FRAME_BUDGET` (it keeps them
    for its backward pass).
    """
    if mode == SmoothMode.DUSTRACK:
        total = n_frames - window + 1  # window starts
        if chunk_frames is None:
            px = int(np.prod(frame_shape)) if frame_shape else 0
            chunk_frames = max(4 * window, FRAME_BUDGET // px) if px else total + window
        step = max(1, chunk_frames - window + 1)
        return [
            Chunk(s, min(s + step, total), s, min(s + step, total) + window - 2)
            for s in range(0, total, step)
        ]
    total = n_frames - 1  # pairs
    step = max(1, (chunk_frames or n_frames) - 1)
    return [Chunk(a, min(a + step, total), a, min(a + step, total)) for a in range(0, total, step)]


def frames_of(source):
    """A frames object from what a chunk task receives: a video path or the frames themselves."""
    if isinstance(source, (str, os.PathLike)):
        from ...io.cine import open_frames

        return open_frames(source)  # a worker reads its chunk once
    return source


def task_source(frames, chunk: Chunk):
    """What to send to a worker for ``chunk``: the video's path if it has one, else the slice."""
    path = getattr(frames, "path", None)
    if path is not None and os.path.exists(path):
        return os.fspath(path), 0
    return np.asarray(frames[chunk.first : chunk.last + 1]), chunk.first


def fields_chunk(
    frames,
    ref: np.ndarray,
    chunk: Chunk,
    params: LKParams = LKParams(),
    grid: Grid = Grid(),
    progress: Callable[[int], None] | None = None,
    cancel=None,
) -> np.ndarray:
    """Grid fields ``(n_pairs, L, G, 2)``: the motion t -> t+1 for the pairs of ``chunk``.

    Pairs where no label is present on both frames are skipped (NaN). Frames are read once,
    in order, ahead of the optical flow (:func:`napari_dustrack.tracking._frames.read_ahead`).
    """
    n_pairs, n_lab, g = chunk.stop - chunk.start, ref.shape[1], grid.n_fields
    fields = np.full((n_pairs, n_lab, g, 2), np.nan, dtype=np.float32)
    present = np.isfinite(ref).all(axis=2)
    need = present[chunk.start : chunk.stop] & present[chunk.start + 1 : chunk.stop + 1]
    pairs = np.flatnonzero(need.any(axis=1)) + chunk.start
    wanted = sorted(set(pairs) | set(pairs + 1))
    prev, prev_t, done = None, None, chunk.start
    for t1, img in read_ahead(frames, wanted, convert=partial(shrink_frame, factor=grid.shrink)):
        raise_if_cancelled(cancel)
        t = t1 - 1
        if prev_t == t and need[t - chunk.start].any():
            centres = np.where(need[t - chunk.start][:, None], ref[t], np.nan)
            fields[t - chunk.start] = pair_fields(prev, img, centres, params, grid)
        prev, prev_t = img, t1
        if progress and t1 - 1 >= done:
            progress(min(t1, chunk.stop) - done)
            done = min(t1, chunk.stop)
    if progress and done < chunk.stop:
        progress(chunk.stop - done)
    return fields


def run_chunk(
    source,
    first: int,
    mode: str,
    chunk: Chunk,
    xy: np.ndarray,
    window: int,
    params: LKParams,
    grid: Grid,
) -> Any:
    """The image work of one chunk, as a dask task (everything in it pickles).

    ``source`` is a video path (opened here) or an array of frames starting at ``first``;
    ``xy`` is the input (``dustrack``) or the reference positions (``fast``/``fusion``) of the
    whole video. Returns ``(sums, counts)`` (``dustrack``) or ``(fields,)``.
    """
    frames = frames_of(source)
    if first:
        frames = FrameView.renumbered(frames, first)
    try:
        if mode == SmoothMode.DUSTRACK:
            sums, counts, _ = dustrack_chunk(frames, xy, window, chunk.start, chunk.stop, params)
            return sums, counts
        return (fields_chunk(frames, xy, chunk, params, grid),)
    finally:
        close = getattr(frames, "close", None)
        if close is not None and frames is not source:
            close()
