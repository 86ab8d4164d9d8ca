"""Prediction (and smoothing) of many videos, and of long videos, on dask.distributed.

The work of a batch is split into small keyed tasks that workers run by video *path* (they open
the video themselves and stream only their frames, so a worker's memory does not grow with the
video's length):

- ``probe``: open the video, return its length and frame rate (a corrupt file fails here);
- ``predict``: the model's points for frames ``[a, b)`` (chunks are multiples of the prediction
  batch, so every forward pass sees the same frames as in one pass);
- ``smooth``: the image work of one smoothing chunk (:func:`tracking.smoothing.plan_chunks`,
  overlapping by what the window needs); the cheap combination runs here, on the caller.

Results come back as they complete (``distributed.as_completed``). Each finished chunk is kept
in ``<out>/.parts/<name>/`` so an interrupted run redoes only missing chunks; each finished
video gets ``<name>.csv`` (raw predictions), ``<name>_smoothed.csv`` (with ``smooth``) and, last,
``<name>.json``: the manifest whose fingerprint (video size and mtime, model checksum, settings)
tells a rerun that the video is complete. Task keys are derived from that fingerprint and the
frame range, so a task dask reruns after a worker died gives the same, single result.

A failing video (unreadable file, too few frames for the window...) is reported with its
one-line reason and the others go on. No Qt, and no torch in this process: the model runs in
the workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import Cancelled, DustrackError, from_os_error
from .io.atomic import check_destination, write_atomic, write_text_atomic
from .io.sidecar import SUFFIX as SIDECAR_SUFFIX
from .worker_env import prepare_worker

DEFAULT_CHUNK_FRAMES = 1000
MANIFEST_FORMAT = "napari-dustrack-batch"
PARTS = ".parts"
SUMMARY = "summary.csv"
SUMMARY_COLUMNS = ["video", "status", "frames", "seconds", "frames_per_s", "mean_confidence",
                   "reason"]
_VIDEO_DIR_SKIP = (SIDECAR_SUFFIX, ".parts")


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BatchSettings:
    """What a batch computes and how it splits the work.

    Attributes
    ----------
    smooth : float or None
        Smoothing window in seconds (None: raw predictions only).
    mode : str
        Smoother mode (``fusion``, ``dustrack`` or ``fast``).
    chunk_frames : int
        Frames per task; rounded up to a multiple of ``batch_size`` for prediction. Outputs do
        not depend on it.
    batch_size : int
        Frames per forward pass of the model.
    threads : int or None
        torch threads per task (None: the worker host's cores shared among its workers).
    """

    smooth: float | None = None
    mode: str = "fusion"
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    batch_size: int = 16
    threads: int | None = None

    def result_fields(self) -> dict:
        """The settings the outputs depend on (part of every video's fingerprint)."""
        from . import __version__

        return {"smooth": self.smooth, "mode": self.mode if self.smooth else None,
                "batch_size": self.batch_size, "napari_dustrack": __version__}


# ----------------------------------------------------------------------------- inputs
def expand_videos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The cines named by ``inputs``: files as given, folders expanded to the cines inside.

    A folder of PNG/JPEG frames is itself one cine; any other folder contributes its video,
    DICOM and TIFF files (not recursively, sidecar folders left out). Paths that do not exist
    are kept, so that they are reported as failures with the rest of the batch.
    """
    from .io.cine import DICOM_SUFFIXES, TIFF_SUFFIXES, VIDEO_SUFFIXES, cine_kind

    suffixes = VIDEO_SUFFIXES + DICOM_SUFFIXES + TIFF_SUFFIXES
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir() or cine_kind(path) == "images":
            out.append(path)
            continue
        for child in sorted(path.iterdir()):
            if child.name.startswith(".") or child.name.endswith(_VIDEO_DIR_SKIP):
                continue
            if child.is_file() and child.suffix.lower() in suffixes:
                out.append(child)
            elif child.is_dir() and cine_kind(child) == "images":
                out.append(child)
    return list(dict.fromkeys(p.absolute() for p in out))


def output_names(videos: Sequence[Path]) -> dict[Path, str]:
    """A file-name stem per video: its own stem, with a short path hash where stems clash."""
    stems: dict[str, int] = {}
    for v in videos:
        stems[v.stem] = stems.get(v.stem, 0) + 1
    return {v: v.stem if stems[v.stem] == 1 else f"{v.stem}-{_digest(str(v))[:6]}"
            for v in videos}


def model_fingerprint(model_dir: str | os.PathLike) -> dict:
    """What identifies a model's predictions: weights checksum, iteration and labels."""
    from .tracking.heatmap.store import read_meta

    meta = read_meta(model_dir)
    return {"sha256": meta["sha256"], "iteration": int(meta["iteration"]),
            "labels": list(meta["labels"])}


def video_fingerprint(path: Path) -> dict:
    """Size and modification time of a video (of every file, for a folder of frames)."""
    st = path.stat()
    if path.is_dir():
        files = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return {"path": str(path), "size": sum(s.st_size for s in files),
                "mtime_ns": max([s.st_mtime_ns for s in files] or [st.st_mtime_ns]),
                "files": len(files)}
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _token(fingerprint: dict) -> str:
    return _digest(json.dumps(fingerprint, sort_keys=True))[:16]


# ----------------------------------------------------------------------------- worker side
_local = threading.local()  # per worker thread: one open video, one loaded model


def _open_cached(path: str):
    """The video at ``path``, kept open between this thread's tasks (its index is reused)."""
    from .io.cine import open_cine

    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    cached = getattr(_local, "cine", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    if cached is not None:
        cached[1].close()
        _local.cine = None
    cine = open_cine(path, frame_cache=False)  # a worker reads each frame once: no disk cache
    _local.cine = (key, cine)
    return cine


def _model_cached(model_dir: str, sha256: str, threads: int | None):
    from .tracking.heatmap.config import pick_device, set_threads
    from .tracking.heatmap.store import load_model

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
def predict_task(path: str, model_dir: str, sha256: str, start: int, stop: int,
                 batch_size: int, threads: int | None = None,
                 per_host: dict | None = None) -> dict:
    """Worker: model points ``xy (n, L, 2)`` and ``confidence (n, L)`` for frames ``start:stop``."""
    prepare_worker()
    from .tracking.heatmap.predict import predict

    model = _model_cached(model_dir, sha256, _threads_here(per_host, threads))
    t0 = time.perf_counter()  # loading the model (once per worker) is not this chunk's work
    xy, conf = predict(_open_cached(path), model, batch_size, start=start, stop=stop)
    return {"xy": xy, "confidence": conf, "seconds": time.perf_counter() - t0,
            "peak_rss": _peak_rss(), "pid": os.getpid()}


@_reported
def smooth_task(path: str, mode: str, chunk, payload: np.ndarray, window: int) -> dict:
    """Worker: the image work of one smoothing chunk (see :func:`.chunks.run_chunk`)."""
    from .tracking.lk import LKParams
    from .tracking.smoothing.chunks import run_chunk
    from .tracking.smoothing.motion import Grid, auto_grid

    t0 = time.perf_counter()
    frames = _open_cached(path)
    # every chunk measures the same first frames, so all get the grid smooth() would use
    grid = Grid() if mode == "dustrack" else auto_grid(frames, mode)
    result = run_chunk(frames, 0, mode, chunk, payload, window, LKParams(), grid)
    return {"parts": tuple(result), "seconds": time.perf_counter() - t0,
            "peak_rss": _peak_rss(), "pid": os.getpid()}


# ----------------------------------------------------------------------------- one video
@dataclass
class VideoRun:
    """The state of one video in a batch (caller side)."""

    path: Path
    name: str
    fingerprint: dict
    token: str
    status: str = "pending"  # pending, probing, predicting, smoothing, done, skipped, failed
    reason: str = ""
    frames: int = 0
    fps: float | None = None
    seconds: float = 0.0
    mean_confidence: float = float("nan")
    labels: list = field(default_factory=list)
    xy: np.ndarray | None = None
    conf: np.ndarray | None = None
    todo: set = field(default_factory=set)  # (kind, start, stop) still running
    plan: list = field(default_factory=list)  # smoothing chunks
    results: dict = field(default_factory=dict)  # smoothing chunk -> parts
    window: int = 0
    # work done in this run, per task kind: [share of the kind's work, worker seconds]; chunks
    # resumed from disk are in neither, so a resumed video's speed is not inflated
    work: dict = field(default_factory=dict)
    frames_per_s: float = float("nan")

    @property
    def parts(self) -> Path:
        return self.out / PARTS / self.name

    out: Path = Path(".")


def predict_ranges(n_frames: int, chunk_frames: int, batch_size: int) -> list[tuple[int, int]]:
    """Frame ranges ``[a, b)`` of the prediction tasks (multiples of ``batch_size`` long)."""
    step = max(batch_size, -(-int(chunk_frames) // batch_size) * batch_size)
    return [(a, min(a + step, n_frames)) for a in range(0, n_frames, step)]


def _manifest_path(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def _outputs(run: VideoRun, settings: BatchSettings) -> dict[str, Path]:
    outs = {"raw": run.out / f"{run.name}.csv"}
    if settings.smooth:
        outs["smoothed"] = run.out / f"{run.name}_smoothed.csv"
    return outs


def is_complete(out: Path, name: str, fingerprint: dict) -> dict | None:
    """The manifest of a finished video when it matches ``fingerprint`` and its outputs are
    all there with their recorded sizes; None otherwise."""
    path = _manifest_path(out, name)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("fingerprint") != fingerprint:
        return None
    for entry in manifest.get("outputs", {}).values():
        f = out / entry["file"]
        if not f.is_file() or f.stat().st_size != entry["size"]:
            return None
    return manifest


# parts on disk: what finished chunks of an interrupted run left behind
def _part_file(run: VideoRun, kind: str, a: int, b: int, extra: str = "") -> Path:
    return run.parts / f"{kind}{extra}-{a}-{b}.npz"


def _save_part(path: Path, arrays: Sequence[np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, *arrays)

    write_atomic(path, write, backup=False)


def _load_part(path: Path) -> list[np.ndarray] | None:
    try:
        with np.load(path) as z:
            return [z[f"arr_{i}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError):
        return None


def _prepare_parts(run: VideoRun) -> None:
    """Keep the parts folder only when it belongs to this video fingerprint."""
    stamp = run.parts / "fingerprint.json"
    try:
        same = json.loads(stamp.read_text(encoding="utf-8")) == run.fingerprint
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(run.parts, ignore_errors=True)
        run.parts.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stamp, json.dumps(run.fingerprint, sort_keys=True), backup=False)


# ----------------------------------------------------------------------------- the batch
@dataclass
class BatchResult:
    """What :func:`run_batch` returns: one summary row per video, and totals."""

    summary: pd.DataFrame
    wall_s: float
    peak_rss: dict = field(default_factory=dict)  # worker pid -> peak resident bytes

    @property
    def failed(self) -> pd.DataFrame:
        return self.summary[self.summary["status"] == "failed"]


class _Batch:
    """The caller's loop: submit keyed tasks, handle each as it completes."""

    def __init__(self, client, runs, model_dir, model_fp, settings, progress, on_event, cancel):
        from distributed import as_completed

        self.client, self.runs, self.settings = client, runs, settings
        self.model_dir, self.model_fp = str(model_dir), model_fp
        self.progress, self.on_event, self.cancel = progress, on_event, cancel
        self.futures: dict[str, tuple[VideoRun, tuple, Any]] = {}
        # keys: deterministic within a run (a task dask reruns after a worker died is the same
        # task); the nonce keeps a rerun clear of keys the scheduler may still be forgetting
        self.nonce = os.urandom(3).hex()
        self.ac = as_completed([], loop=client.loop, with_results=False)
        self.per_host = _workers_per_host(client)
        self.peak_rss: dict[int, int] = {}
        self.tasks_done = 0
        self.tasks_total = 0

    # -- submitting ------------------------------------------------------------------------
    def _submit(self, run: VideoRun, what: tuple, func, *args) -> None:
        key = "-".join(["dustrack-batch", what[0], run.token, self.nonce, *map(str, what[1:])])
        if key in self.futures:
            return  # already running: a chunk is computed once
        fut = self.client.submit(func, *args, key=key, pure=True, retries=0)
        self.futures[key] = (run, what, fut)
        run.todo.add(what)
        self.tasks_total += 1
        self.ac.add(fut)
        self._event("submitted", run, what)

    def start(self, run: VideoRun) -> None:
        run.status = "probing"
        self._submit(run, ("probe",), probe_task, str(run.path))

    def _start_predict(self, run: VideoRun, info: dict) -> None:
        run.frames, run.fps = int(info["frames"]), info["fps"]
        if run.frames < 1:
            raise DustrackError("video has no frames", run.path)
        if self.settings.smooth:
            from .tracking.smoothing import window_frames

            run.window = window_frames(self.settings.smooth, run.fps, path=run.path)
            if run.window > run.frames:
                raise DustrackError(f"the video has {run.frames} frames, fewer than the "
                                    f"{run.window}-frame smoothing window", run.path)
        n_lab = len(self.model_fp["labels"])
        run.labels = list(self.model_fp["labels"])
        run.xy = np.full((run.frames, n_lab, 2), np.nan)
        run.conf = np.full((run.frames, n_lab), np.nan)
        run.status = "predicting"
        _prepare_parts(run)
        ranges = predict_ranges(run.frames, self.settings.chunk_frames, self.settings.batch_size)
        for a, b in ranges:
            part = _load_part(_part_file(run, "predict", a, b))
            if part is not None and part[0].shape == (b - a, n_lab, 2):
                run.xy[a:b], run.conf[a:b] = part
                self._event("resumed", run, ("predict", a, b))
                continue
            self._submit(run, ("predict", a, b), predict_task, str(run.path), self.model_dir,
                         self.model_fp["sha256"], a, b, self.settings.batch_size,
                         self.settings.threads, self.per_host)
        self._maybe_next(run)

    def _start_smooth(self, run: VideoRun) -> None:
        from .tracking.smoothing import check_inputs, plan_chunks
        from .tracking.smoothing.motion import reference_positions

        mode = self.settings.mode
        xy = check_inputs(run.frames, run.xy, run.window, mode, run.conf, run.labels, run.path)
        run.status = "smoothing"
        run.plan = plan_chunks(run.frames, run.window, mode, self.settings.chunk_frames)
        payload = xy if mode == "dustrack" else reference_positions(xy)
        extra = f"-{mode}-{run.window}"
        for c in run.plan:
            part = _load_part(_part_file(run, "smooth", c.start, c.stop, extra))
            if part is not None:
                run.results[c] = part
                self._event("resumed", run, ("smooth", c.start, c.stop))
                continue
            self._submit(run, ("smooth", mode, run.window, c.start, c.stop), smooth_task,
                         str(run.path), mode, c, payload, run.window)
        self._maybe_next(run)

    # -- completing ------------------------------------------------------------------------
    def _maybe_next(self, run: VideoRun) -> None:
        if run.todo or run.status in ("failed", "done"):
            return
        if run.status == "predicting":
            self._write_raw(run)
            if self.settings.smooth:
                self._start_smooth(run)
                return
        elif run.status == "smoothing":
            self._write_smoothed(run)
        self._finish(run)

    def handle(self, fut) -> None:
        entry = self.futures.pop(fut.key, None)
        if entry is None or entry[0].status == "failed" or entry[1] not in entry[0].todo:
            fut.release()
            return  # the video failed already (its tasks were cancelled): nothing to do
        run, what, _ = entry
        self.tasks_done += 1
        try:
            if fut.status == "error":
                raise fut.exception()
            if fut.status != "finished":
                raise RuntimeError(f"task {fut.status}")
            result = fut.result()
            if "error" in result:
                raise DustrackError(result["error"])
            run.todo.discard(what)
            if what[0] == "probe":
                self._start_predict(run, result)
            elif what[0] == "predict":
                self._got_predict(run, what, result)
            else:
                self._got_smooth(run, what, result)
        except (Exception, Cancelled) as exc:  # noqa: BLE001 - any failure fails this video only
            self._fail(run, exc)
        finally:
            fut.release()
        self._event("completed", run, what)

    def _account(self, run: VideoRun, result: dict, kind: str, share: float) -> None:
        run.seconds += float(result["seconds"])
        done = run.work.setdefault(kind, [0.0, 0.0])
        done[0] += share
        done[1] += float(result["seconds"])
        pid = int(result["pid"])
        self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), int(result["peak_rss"]))

    def _got_predict(self, run: VideoRun, what: tuple, result: dict) -> None:
        _, a, b = what
        self._account(run, result, "predict", (b - a) / run.frames)
        run.xy[a:b], run.conf[a:b] = result["xy"], result["confidence"]
        _save_part(_part_file(run, "predict", a, b), [result["xy"], result["confidence"]])
        self._maybe_next(run)

    def _got_smooth(self, run: VideoRun, what: tuple, result: dict) -> None:
        _, mode, window, start, stop = what
        chunk = next(c for c in run.plan if (c.start, c.stop) == (start, stop))
        total = sum(c.stop - c.start for c in run.plan)
        self._account(run, result, "smooth", (stop - start) / max(total, 1))
        run.results[chunk] = list(result["parts"])
        _save_part(_part_file(run, "smooth", start, stop, f"-{mode}-{window}"), result["parts"])
        self._maybe_next(run)

    def _write_raw(self, run: VideoRun) -> None:
        from .io.table import from_array, write_points_csv

        table = from_array(run.xy, run.labels, source="model", confidence=run.conf)
        write_points_csv(table, _outputs(run, self.settings)["raw"], backup=False)
        finite = np.isfinite(run.conf)
        run.mean_confidence = float(run.conf[finite].mean()) if finite.any() else float("nan")

    def _write_smoothed(self, run: VideoRun) -> None:
        from .io.table import from_array, write_points_csv

        out = combine_smoothing(run.xy, run.conf, run.plan, [run.results[c] for c in run.plan],
                                run.window, self.settings.mode)
        table = from_array(out, run.labels, source="smoothed", confidence=run.conf)
        write_points_csv(table, _outputs(run, self.settings)["smoothed"], backup=False)

    def _finish(self, run: VideoRun) -> None:
        run.frames_per_s = work_rate(run.frames, run.work)
        outputs = {k: {"file": p.name, "size": p.stat().st_size}
                   for k, p in _outputs(run, self.settings).items()}
        manifest = {
            "format": MANIFEST_FORMAT, "version": 1, "fingerprint": run.fingerprint,
            "outputs": outputs, "frames": run.frames, "fps": run.fps, "window_frames":
            run.window or None, "seconds": run.seconds, "frames_per_s": run.frames_per_s,
            "mean_confidence": run.mean_confidence,
            "labels": run.labels, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_text_atomic(_manifest_path(run.out, run.name), json.dumps(manifest, indent=1),
                          backup=False)
        shutil.rmtree(run.parts, ignore_errors=True)
        run.status = "done"
        run.xy = run.conf = None
        run.results = {}

    def _fail(self, run: VideoRun, exc: BaseException) -> None:
        run.status, run.reason = "failed", _reason(exc, run.path)
        run.xy = run.conf = None
        mine = [key for key, (r, _, _) in self.futures.items() if r is run]
        futs = [self.futures.pop(key)[2] for key in mine]
        if futs:
            self.client.cancel(futs)
            self.tasks_total -= len(futs)
        run.todo.clear()

    def _event(self, kind: str, run: VideoRun, what: tuple) -> None:
        if self.on_event:
            self.on_event({"event": kind, "video": str(run.path), "task": what,
                           "status": run.status})
        if kind == "completed" and self.progress:
            done = sum(r.status in ("done", "skipped", "failed") for r in self.runs)
            self.progress(self.tasks_done, self.tasks_total, done, len(self.runs))

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        for run in self.runs:
            if run.status == "pending":
                self.start(run)
        try:
            for fut in self.ac:
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled(None)
                self.handle(fut)
                if not self.futures:
                    break
        finally:
            if self.futures:  # interrupted: stop the rest (finished chunks stay in .parts)
                self.client.cancel([f for _, _, f in self.futures.values()])
                self.futures.clear()


def combine_smoothing(xy, conf, plan, results, window: int, mode: str) -> np.ndarray:
    """The smoothed tracks from the chunks' image work (what :func:`smooth` computes)."""
    from .tracking.smoothing import combine_chunks

    return combine_chunks(xy, plan, results, window, mode, conf)


def work_rate(frames: int, work: dict) -> float:
    """Frames per worker second of a video from the work this run did: each kind's seconds
    scaled up to the whole video (NaN when everything was resumed from disk)."""
    per_frame = sum(seconds / (share * frames) for share, seconds in work.values() if share > 0)
    return 1.0 / per_frame if per_frame > 0 else float("nan")


def _workers_per_host(client) -> dict[str, int]:
    hosts: dict[str, int] = {}
    for addr in client.scheduler_info().get("workers", {}):
        host = addr.rsplit(":", 1)[0]
        hosts[host] = hosts.get(host, 0) + 1
    return hosts


def _reason(exc: BaseException, path) -> str:
    """One line: a DustrackError as it is, anything else with its type and the video."""
    if isinstance(exc, DustrackError):
        # a DustrackError that crossed the process boundary has its path in the message only
        text = str(exc)
        return text if str(path) in text else str(DustrackError(text, path))
    name = type(exc).__name__
    if name == "KilledWorker":
        return str(DustrackError("a worker died on it repeatedly (out of memory?)", path))
    return str(DustrackError(f"{name}: {exc}", path))


def run_batch(
    videos: Iterable[str | os.PathLike],
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    settings: BatchSettings = BatchSettings(),
    client=None,
    address: str | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
    on_event: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> BatchResult:
    """Predict (and smooth) every video; write tables, manifests and ``summary.csv`` to ``out``.

    Parameters
    ----------
    videos : paths
        Cine files or folders of them (see :func:`expand_videos`).
    model_dir : path
        A trained heatmap model folder.
    out : path
        Output folder (created).
    settings : BatchSettings
    client : distributed.Client, optional
        Default: ``jobs.get_client(address)`` (a local cluster when ``address`` is None).
    progress : callable, optional
        ``progress(tasks_done, tasks_total, videos_done, videos_total)`` after each task.
    on_event : callable, optional
        Called with a dict for every task submitted, resumed from disk or completed.
    cancel : threading.Event, optional
        When set, running tasks are cancelled and :class:`Cancelled` is raised; finished
        chunks stay on disk for the next run.

    Returns
    -------
    BatchResult
        ``summary`` has one row per video: status ``done``, ``skipped`` (complete from an
        earlier run) or ``failed`` with the one-line reason.

    Raises
    ------
    DustrackError
        No videos, or an unusable model folder.
    """
    t0 = time.perf_counter()
    paths = expand_videos(videos)
    if not paths:
        raise DustrackError("no cines found in the given paths")
    model_fp = model_fingerprint(model_dir)
    out = check_destination(out, folder=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, out) from None
    runs = _make_runs(paths, out, model_fp, settings)
    if any(r.status == "pending" for r in runs):
        if client is None:
            from .jobs import get_client

            client = get_client(address)
        batch = _Batch(client, runs, Path(model_dir).absolute(), model_fp, settings, progress,
                       on_event, cancel)
        batch.run()
        peak = batch.peak_rss
        try:
            (out / PARTS).rmdir()  # only when empty: parts of unfinished videos stay
        except OSError:
            pass
    else:
        peak = {}
    summary = summary_table(runs)
    write_atomic(out / SUMMARY, lambda p: summary.to_csv(p, index=False), backup=False)
    return BatchResult(summary=summary, wall_s=time.perf_counter() - t0, peak_rss=peak)


def _make_runs(paths, out: Path, model_fp: dict, settings: BatchSettings) -> list[VideoRun]:
    names = output_names(paths)
    runs = []
    for path in paths:
        try:
            vfp = video_fingerprint(path)
        except OSError:
            vfp = None
        fp = {"video": vfp, "model": model_fp, "settings": settings.result_fields()}
        run = VideoRun(path=path, name=names[path], fingerprint=fp, token=_token(fp), out=out)
        if vfp is None:
            run.status, run.reason = "failed", str(DustrackError("file not found", path))
        elif (manifest := is_complete(out, run.name, fp)) is not None:
            run.status = "skipped"
            run.frames = int(manifest["frames"])
            run.seconds = float(manifest["seconds"])
            run.frames_per_s = float(manifest.get("frames_per_s", float("nan")))
            run.mean_confidence = float(manifest["mean_confidence"])
        runs.append(run)
    return runs


def summary_table(runs: Sequence[VideoRun]) -> pd.DataFrame:
    """One row per video: frames, worker seconds, frames/s, mean confidence, status, reason."""
    rows = []
    for r in runs:
        fps = r.frames_per_s if r.status != "failed" else float("nan")
        rows.append({"video": str(r.path), "status": r.status,
                     "frames": r.frames if r.status != "failed" else 0,
                     "seconds": round(r.seconds, 3), "frames_per_s": round(fps, 2),
                     "mean_confidence": round(r.mean_confidence, 4), "reason": r.reason})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as an aligned text table (video names shortened to their file name)."""
    shown = summary.assign(video=[Path(v).name for v in summary["video"]]).fillna("")
    return shown.to_string(index=False)


class TextProgress:
    """A one-line progress report on a stream: a bar on a terminal, sparse lines otherwise."""

    def __init__(self, stream=None, every_s: float = 0.5):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if self.tty else 10.0
        self.last = 0.0
        self.t0 = time.monotonic()

    def __call__(self, tasks_done: int, tasks_total: int, videos_done: int, videos_total: int):
        now = time.monotonic()
        final = videos_done == videos_total
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        frac = tasks_done / max(tasks_total, 1)
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        line = (f"[{bar}] tasks {tasks_done}/{tasks_total}  videos {videos_done}/{videos_total}"
                f"  {now - self.t0:6.0f} s")
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
