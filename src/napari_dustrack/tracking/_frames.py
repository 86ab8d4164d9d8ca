"""Frames as the tracking algorithms read them: grey uint8, read ahead in order, renumbered.

Every algorithm here reads frames through :func:`read_ahead` (one thread decodes a few frames
ahead, in order, so a video reader still sees sequential access) and, when it works on part of a
video, through a :class:`FrameView` (a window numbered from 0, or a slice numbered as in the whole
video). The grey conversion is :func:`napari_dustrack.io.pixels.to_gray_u8`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..io.pixels import to_gray_u8

__all__ = ["FrameView", "GrayFrames", "in_memory", "read_ahead"]


class FrameView:
    """``view[i]`` is ``frames[i + shift]``, for ``0 <= i < len(view)``.

    Use :meth:`window` for frames ``start..stop-1`` of a long video numbered from 0 (short runs
    keep their arrays small) and :meth:`renumbered` for a slice of a video that callers index
    with the whole video's frame numbers. ``offset`` is what turns an index of the view into the
    frame number the user knows (for messages); ``path`` is the video's, if it has one.
    """

    def __init__(self, frames, shift: int, length: int, offset: int):
        self.frames, self.shift, self.length, self.offset = frames, shift, length, offset
        self.path = getattr(frames, "path", None)

    @classmethod
    def window(cls, frames, start: int, stop: int) -> FrameView:
        """Frames ``start..stop-1`` of ``frames`` as ``view[0..stop-start-1]``."""
        return cls(frames, start, stop - start, start)

    @classmethod
    def renumbered(cls, part, first: int) -> FrameView:
        """``part`` (frames ``first, first + 1, ...`` of a video) indexed as ``view[first..]``."""
        return cls(part, -first, first + len(part), 0)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.frames[i + self.shift]


class GrayFrames:
    """Grey frames by index, each decoded once while kept (random access within a segment)."""

    def __init__(self, frames):
        self.frames, self.cache = frames, {}

    def __getitem__(self, i: int) -> np.ndarray:
        if i not in self.cache:
            self.cache[i] = to_gray_u8(self.frames[i])
        return self.cache[i]

    def clear(self) -> None:
        self.cache.clear()


def in_memory(frames) -> bool:
    """Whether ``frames`` (or the frames a view shows) is an array already in memory."""
    while isinstance(frames, FrameView):
        frames = frames.frames
    return isinstance(frames, np.ndarray)


def read_ahead(
    frames,
    indices: Iterable[int],
    *,
    depth: int = 3,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, grey frame t)`` for ``indices`` in order.

    One background thread reads up to ``depth`` frames ahead, in order: decoding (which releases
    the GIL in PyAV, OpenCV and dask) overlaps the work on the frames already read, and each
    frame is read once. Frames already in memory, ``depth`` 0 or a single index are read in the
    calling thread (a thread would only add GIL hand-overs). ``convert`` is applied to each grey
    frame in the reading thread (e.g. shrinking). A frame that cannot be read raises its error
    from this iterator at that frame; closing the iterator stops the reading.
    """
    indices = list(indices)

    def read(t: int) -> np.ndarray:
        img = to_gray_u8(frames[t])
        return img if convert is None else convert(img)

    if depth <= 0 or in_memory(frames) or len(indices) < 2:
        for t in indices:
            yield t, read(t)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dustrack-read-ahead") as pool:
        pending: deque = deque()
        it = iter(indices)
        try:
            for t in it:
                pending.append((t, pool.submit(read, t)))
                if len(pending) >= depth:
                    break
            while pending:
                t, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(read, nxt)))
                yield t, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
