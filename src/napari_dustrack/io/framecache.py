"""A background-filled grayscale frame cache on disk, for instant scrubbing of long videos.

Random access into H.264 costs a seek plus decoding up to a keyframe interval of frames. A
thread decodes the whole video once, in order, into ``<video>.dustrack/frames-<H>x<W>.u8``:
raw uint8 frames back to back, so ``np.memmap(path, np.uint8, "r", shape=(N, H, W))`` reads
it. Very long cines are cached at reduced size (full size divided by an integer) so the file
stays under a byte budget; those frames serve display only (the caller upsamples them),
never the algorithms.

Next to the data, ``frames-<H>x<W>.json`` records the source file it was made from (size and
modification time) and ``frames-<H>x<W>.filled.npy`` which frames are in, so a partial cache
resumes and a stale one is rebuilt. One process fills at a time (a lock file); others only
read what is complete.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .sidecar import sidecar_dir, source_stamp

try:  # POSIX: keep two processes from filling the same cache
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

DEFAULT_MAX_BYTES = 6 * 2**30
_SAVE_EVERY_S = 2.0


def cache_shape(n_frames: int, frame_shape: tuple[int, int], max_bytes: int) -> tuple[int, int]:
    """Frame size of the cache: full size, or divided by the smallest integer that fits
    ``max_bytes`` (integer factors keep the shrinking cheap)."""
    h, w = frame_shape
    factor = max(1, math.ceil(math.sqrt(n_frames * h * w / max(max_bytes, 1))))
    while factor > 1 and n_frames * (h // (factor - 1)) * (w // (factor - 1)) <= max_bytes:
        factor -= 1  # guard against rounding up too far
    while n_frames * (h // factor) * (w // factor) > max_bytes and factor < min(h, w):
        factor += 1
    return max(h // factor, 1), max(w // factor, 1)


def load_index(video) -> tuple[np.ndarray, np.ndarray] | None:
    """``(pts, keyframes)`` saved by :func:`save_index` for this very file, else None."""
    path = sidecar_dir(video) / "index.npz"
    try:
        with np.load(path) as saved:
            stamp = json.loads(str(saved["stamp"]))
            if stamp != source_stamp(video):
                return None
            return saved["pts"].astype(np.int64), saved["keyframes"].astype(np.int64)
    except (OSError, ValueError, KeyError):
        return None


def save_index(video, pts: np.ndarray, keyframes: np.ndarray) -> None:
    """Keep a video's frame index in its sidecar so the next open skips the demux pass."""
    folder = sidecar_dir(video)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "index.tmp.npz"
        np.savez(
            tmp,
            pts=pts,
            keyframes=keyframes,
            stamp=np.array(json.dumps(source_stamp(video))),
        )
        os.replace(tmp, folder / "index.npz")
    except OSError:
        pass  # read-only folder: the index is rebuilt next time


def _cache_files(folder: Path, shape) -> tuple[Path, Path, Path]:
    """The data, metadata and filled-mask files of the cache of frame size ``shape``."""
    stem = f"frames-{shape[0]}x{shape[1]}"
    return folder / f"{stem}.u8", folder / f"{stem}.json", folder / f"{stem}.filled.npy"


def _load_filled(folder: Path, shape, signature: dict, n_frames: int) -> np.ndarray:
    """Which frames the cache of frame size ``shape`` in ``folder`` holds (all False when it is
    missing or was made from another file)."""
    empty = np.zeros(n_frames, dtype=bool)
    data, meta_path, filled_path = _cache_files(folder, shape)
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("source") != signature:
            return empty
        if data.stat().st_size != n_frames * shape[0] * shape[1]:
            return empty
        if meta.get("complete"):
            return np.ones(n_frames, dtype=bool)
        filled = np.load(filled_path)
        return filled.astype(bool) if filled.shape == empty.shape else empty
    except (OSError, ValueError, KeyError):
        return empty


class CachedFrames:
    """Read-only access to the full-size frames an existing cache holds (no fill thread).

    What an algorithm uses when it opens a video without filling a cache of its own: frames
    that napari (or an earlier command) already decoded into the cache are read from disk
    instead of being decoded again; the pixels are the same.
    """

    full_res = True

    def __init__(self, path: Path, filled: np.ndarray, frame_shape: tuple[int, int]):
        self.path = path
        self.filled = filled
        self.frame_shape = frame_shape
        self._mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(len(filled), *frame_shape))

    def has(self, i: int) -> bool:
        return bool(self.filled[i])

    def get(self, i: int) -> np.ndarray:
        return np.array(self._mm[i])

    get_full = get

    def request(self, i: int, keyframe_before: int, keyframe_after: int) -> None:
        """Nothing to do: this view never fills."""

    def close(self) -> None:
        self._mm = None


def open_cached_frames(video, n_frames: int, frame_shape) -> CachedFrames | None:
    """The full-size frame cache of ``video`` when one exists with frames in it, else None."""
    video = Path(video)
    shape = tuple(int(v) for v in frame_shape)
    try:
        signature = _signature(video, n_frames, shape, shape)
    except OSError:
        return None
    folder = sidecar_dir(video)
    filled = _load_filled(folder, shape, signature, int(n_frames))
    if not filled.any():
        return None
    try:
        return CachedFrames(_cache_files(folder, shape)[0], filled, shape)
    except (OSError, ValueError):
        return None


def _signature(video: Path, n_frames: int, frame_shape, shape) -> dict:
    return {
        **source_stamp(video),
        "n_frames": int(n_frames),
        "frame_shape": list(frame_shape),
        "cache_shape": list(shape),
    }


class FrameCache:
    """Fill a frame cache in a background thread and serve frames from it.

    Parameters
    ----------
    video : path
        The video file; the cache lives in its sidecar folder.
    n_frames : int
        Frame count.
    frame_shape : (H, W)
        Full frame size.
    make_reader : callable
        ``make_reader((h, w))`` returns a fresh reader (own file handle) whose ``read(i)``
        gives frame ``i`` as uint8 at the cache size ``(h, w)`` (full size or reduced), fast
        for ``i = previous + 1``, and has ``close()``. Called in the fill thread.
    max_bytes : int
        Size budget of the cache file; above it frames are stored at reduced size.
    folder : path, optional
        Where to keep the cache (default: the sidecar folder).
    start : bool
        Start filling now.
    start_delay : float
        Seconds the thread waits before decoding, leaving the CPU to the first frames the
        viewer shows right after opening.

    Raises
    ------
    OSError
        When the folder cannot be created or written (the caller then goes without a cache).
    """

    def __init__(
        self,
        video,
        n_frames: int,
        frame_shape,
        make_reader: Callable,
        max_bytes: int = DEFAULT_MAX_BYTES,
        folder=None,
        start: bool = True,
        start_delay: float = 0.0,
    ):
        self.video = Path(video)
        self.n_frames = int(n_frames)
        self.full_shape = tuple(int(v) for v in frame_shape)
        self.frame_shape = cache_shape(self.n_frames, self.full_shape, int(max_bytes))
        self.full_res = self.frame_shape == self.full_shape
        self._make_reader = make_reader
        folder = Path(folder) if folder is not None else sidecar_dir(self.video)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"frames-{self.frame_shape[0]}x{self.frame_shape[1]}"
        self.path, self._meta_path, self._filled_path = _cache_files(folder, self.frame_shape)
        self._frame_bytes = self.frame_shape[0] * self.frame_shape[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._queue: deque[tuple[int, int]] = deque()
        self._cursor = 0
        self._thread: threading.Thread | None = None
        self._start_delay = float(start_delay)
        self._mm = None
        self.error: BaseException | None = None
        self._signature = _signature(self.video, self.n_frames, self.full_shape, self.frame_shape)
        self._lock_fh = self._try_lock(folder / f"{stem}.lock")
        self.writer = self._lock_fh is not None
        self.filled = self._load_state()
        self._fd = None
        if self.writer:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size != self.n_frames * self._frame_bytes:
                os.ftruncate(self._fd, self.n_frames * self._frame_bytes)  # sparse: no disk yet
        if self.complete:
            self._done.set()
        elif start and self.writer:
            self.start()

    # -- state -------------------------------------------------------------------------------
    @staticmethod
    def _try_lock(path: Path):
        fh = open(path, "a+")
        if fcntl is None:
            return fh
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return None
        return fh

    def _load_state(self) -> np.ndarray:
        return _load_filled(self.path.parent, self.frame_shape, self._signature, self.n_frames)

    def _save_state(self) -> None:
        if not self.writer:
            return
        with self._lock:
            filled = self.filled.copy()
        tmp = self._filled_path.with_suffix(".tmp.npy")
        np.save(tmp, filled)
        os.replace(tmp, self._filled_path)
        meta = {
            "source": self._signature,
            "complete": bool(filled.all()),
            "video": self.video.name,
            "dtype": "uint8",
            "shape": [self.n_frames, *self.frame_shape],
        }
        tmp = self._meta_path.with_suffix(".tmp.json")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self._meta_path)

    # -- public API --------------------------------------------------------------------------
    @property
    def n_filled(self) -> int:
        return int(np.count_nonzero(self.filled))

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    def has(self, i: int) -> bool:
        """True when frame ``i`` is in the cache."""
        return bool(self.filled[i])

    def get(self, i: int) -> np.ndarray:
        """Frame ``i`` at cache size (a copy); only valid when :meth:`has` is true."""
        if self._mm is None:
            self._mm = np.memmap(
                self.path, dtype=np.uint8, mode="r", shape=(self.n_frames, *self.frame_shape)
            )
        return np.array(self._mm[i])

    def get_full(self, i: int) -> np.ndarray:
        """Frame ``i`` at full size (upsampled when the cache is reduced)."""
        frame = self.get(i)
        if self.full_res:
            return frame
        import cv2

        return cv2.resize(frame, self.full_shape[::-1], interpolation=cv2.INTER_LINEAR)

    def request(self, i: int, keyframe_before: int, keyframe_after: int) -> None:
        """Fill around frame ``i`` next (the user is looking there): its keyframe interval."""
        if self.filled[i] or not self.writer:
            return
        with self._lock:
            span = (int(keyframe_before), int(max(keyframe_after, i + 1)))
            if span not in self._queue:
                self._queue.appendleft(span)

    def start(self) -> None:
        """Start the fill thread (no-op when running or complete)."""
        if self._thread is None and not self.complete and self.writer:
            self._thread = threading.Thread(
                target=self._run, name="dustrack-frame-cache", daemon=True
            )
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the cache is complete (or the fill stopped); True when complete."""
        if self._thread is not None:
            self._thread.join(timeout)
        else:
            self._done.wait(timeout)
        return self.complete

    def stop(self) -> None:
        """Ask the fill thread to stop (non-blocking); it saves progress and releases files."""
        self._stop.set()
        # the thread releases on its way out if it sees the stop; if it has already gone
        # (done is set before it looks), release here. _release is idempotent.
        if self._thread is None or self._done.is_set():
            self._release()

    def close(self) -> None:
        """Stop filling, save progress, release the files."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._release()
        self._mm = None

    def _release(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, None
            lock_fh, self._lock_fh = self._lock_fh, None
        if fd is not None:
            self._save_state()
            os.close(fd)
        if lock_fh is not None:
            lock_fh.close()

    # -- fill thread -------------------------------------------------------------------------
    def _next_target(self) -> int | None:
        with self._lock:
            while self._queue:
                start, stop = self._queue[0]
                holes = np.flatnonzero(~self.filled[start:stop])
                if holes.size:
                    return start + int(holes[0])
                self._queue.popleft()
            rest = np.flatnonzero(~self.filled[self._cursor :])
            if not rest.size:
                return None
            self._cursor += int(rest[0])
            return self._cursor

    def _run(self) -> None:
        _lower_thread_priority()
        reader = None
        last_save = time.monotonic()
        try:
            if self._stop.wait(self._start_delay):
                return
            reader = self._make_reader(self.frame_shape)
            while not self._stop.is_set():
                i = self._next_target()
                if i is None:
                    break
                self._write(i, reader.read(i))
                if time.monotonic() - last_save > _SAVE_EVERY_S:
                    self._save_state()
                    last_save = time.monotonic()
        except BaseException as exc:  # a damaged tail: keep what is cached, serve the rest live
            self.error = exc
        finally:
            if reader is not None:
                reader.close()
            self._save_state()
            self._done.set()
            if self._stop.is_set():  # stopped by stop(): nobody else will release
                self._release()

    def _write(self, i: int, frame: np.ndarray) -> None:
        if frame.shape != self.frame_shape:
            import cv2

            frame = cv2.resize(frame, self.frame_shape[::-1], interpolation=cv2.INTER_AREA)
        data = np.ascontiguousarray(frame, dtype=np.uint8).data
        if hasattr(os, "pwrite"):
            os.pwrite(self._fd, data, i * self._frame_bytes)
        else:  # pragma: no cover - Windows has no pwrite; only this thread writes
            os.lseek(self._fd, i * self._frame_bytes, os.SEEK_SET)
            os.write(self._fd, data)
        with self._lock:
            self.filled[i] = True


def _lower_thread_priority() -> None:
    """Let the interactive decoder win the CPU over the fill (Linux: per-thread nice)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + 10, 19))
    except (AttributeError, OSError):
        pass
