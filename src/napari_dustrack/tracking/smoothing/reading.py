"""Reading frames in order while the caller works on the previous ones."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from ..lk import to_gray_u8
from .scale import shrink_frame


def _gray(frames, t: int, shrink: int = 1) -> np.ndarray:
    return shrink_frame(to_gray_u8(np.asarray(frames[t])), shrink)


def read_ahead(frames, indices: Iterable[int], depth: int = 3,
               shrink: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(t, grayscale frame t)`` for ``indices`` in order.

    One background thread decodes up to ``depth`` frames ahead, in order (so a video reader
    still sees sequential access): decoding (which releases the GIL in PyAV) overlaps the
    optical flow on the frames already read. ``shrink`` > 1 also shrinks the frames there
    (:func:`.scale.shrink_frame`).
    """
    indices = list(indices)
    if isinstance(frames, np.ndarray) or len(indices) < 2:
        # frames already in memory: a thread would only add GIL hand-overs
        for t in indices:
            yield t, _gray(frames, t, shrink)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read_ahead") as pool:
        pending: deque = deque()
        it = iter(indices)
        try:
            for t in it:
                pending.append((t, pool.submit(_gray, frames, t, shrink)))
                if len(pending) >= depth:
                    break
            while pending:
                t, fut = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_gray, frames, nxt, shrink)))
                yield t, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()
