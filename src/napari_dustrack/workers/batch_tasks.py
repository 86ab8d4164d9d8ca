"""The worker side of a batch: small tasks keyed by the caller, each opening the video by path
and keeping it (and the loaded model) open for this worker thread's next task.

- ``probe``: the video's length and frame rate (a corrupt file fails here);
- ``predict``: the model's points for frames ``[a, b)``;
- ``smooth``: the image work of one smoothing chunk.

A DustrackError comes back as ``{"error": message}`` (see :func:`_reported`).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

from ..errors import DustrackError
from ..io.cine import open_frames
from ..worker_env import prepare_worker

_local = threading.local()  # per worker thread: one open video, one loaded model


def _open_cached(path: str):
    """The video at ``path``, kept open between this thread's tasks (its index is reused)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    cached = getattr(_local, "cine", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    if cached is not None:
        cached[1].close()
        _local.cine = None
    cine = open_frames(path)
    _local.cine = (key, cine)
    return cine


def _model_cached(model_dir: str, sha256: str, threads: int | None):
    from ..tracking.heatmap.config import pick_device, set_threads
    from ..tracking.heatmap.store import load_model

    set_threads(threads)
    key = (model_dir, sha256)
    cached = getattr(_local, "model", None)
    if cached is None or cached[0] != key:
        model = load_model(model_dir, device=pick_device("auto"))
        if model.meta["sha256"] != sha256:
            raise DustrackError("the model changed while the batch was running", model_dir)
        _local.model = cached = (key, model)
    return cached[1]


def _peak_rss() -> int:
    """Peak resident memory of this process so far, bytes."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except ImportError:  # Windows
        import psutil

        return int(psutil.Process().memory_info().peak_wset)


def _threads_here(per_host: dict[str, int] | None, threads: int | None) -> int | None:
    """torch threads for a task: given, or this host's cores over the workers sharing them."""
    if threads is not None:
        return threads
    try:
        from distributed import get_worker

        worker = get_worker()
        host = worker.address.rsplit(":", 1)[0]
        sharing = (per_host or {}).get(host, 1) * max(1, int(worker.state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, sharing))


def _reported(func):
    """Return a DustrackError as ``{"error": message}``: an expected failure of one video,
    not a crash for distributed to log with a traceback."""
    import functools

    @functools.wraps(func)
    def task(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DustrackError as exc:
            return {"error": str(exc)}

    return task


@_reported
def probe_task(path: str) -> dict:
    """Worker: length, frame rate and frame shape of a video (a corrupt one fails here)."""
    cine = _open_cached(path)
    first = np.asarray(cine[0])  # a file whose frames do not decode fails now, not later
    return {"frames": len(cine), "fps": cine.fps, "shape": list(first.shape[:2])}


@_reported
def predict_chunk_task(
    path: str,
    model_dir: str,
    sha256: str,
    start: int,
    stop: int,
    batch_size: int,
    threads: int | None = None,
    per_host: dict | None = None,
) -> dict:
    """Worker: model points ``xy (n, L, 2)`` and ``confidence (n, L)`` for frames ``start:stop``."""
    prepare_worker()
    from ..tracking.heatmap.predict import predict

    model = _model_cached(model_dir, sha256, _threads_here(per_host, threads))
    t0 = time.perf_counter()  # loading the model (once per worker) is not this chunk's work
    xy, conf = predict(_open_cached(path), model, batch_size, start=start, stop=stop)
    return {
        "xy": xy,
        "confidence": conf,
        "seconds": time.perf_counter() - t0,
        "peak_rss": _peak_rss(),
        "pid": os.getpid(),
    }


@_reported
def smooth_chunk_task(path: str, mode: str, chunk, payload: np.ndarray, window: int) -> dict:
    """Worker: the image work of one smoothing chunk (see :func:`.chunks.run_chunk`)."""
    from ..tracking.lk import LKParams
    from ..tracking.smoothing.chunks import run_chunk
    from ..tracking.smoothing.motion import Grid, auto_grid

    t0 = time.perf_counter()
    frames = _open_cached(path)
    # every chunk measures the same first frames, so all get the grid smooth() would use
    grid = Grid() if mode == "dustrack" else auto_grid(frames, mode)
    result = run_chunk(frames, 0, mode, chunk, payload, window, LKParams(), grid)
    return {
        "parts": tuple(result),
        "seconds": time.perf_counter() - t0,
        "peak_rss": _peak_rss(),
        "pid": os.getpid(),
    }
