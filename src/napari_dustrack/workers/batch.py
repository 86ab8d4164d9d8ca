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

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import Cancelled, DustrackError, from_os_error
from ..io.atomic import check_destination, write_atomic, write_text_atomic
from ..io.sources import PointSource
from .batch_inputs import (
    DEFAULT_CHUNK_FRAMES,
    PARTS,
    BatchSettings,
    expand_videos,
    model_fingerprint,
    output_names,
    video_fingerprint,
)
from .batch_store import (
    MANIFEST_FORMAT,
    SUMMARY,
    VideoRun,
    format_summary,
    is_complete,
    load_part,
    make_runs,
    manifest_path,
    output_paths,
    part_file,
    predict_ranges,
    prepare_parts,
    save_part,
    summary_table,
    work_rate,
)
from .batch_tasks import predict_chunk_task, probe_task, smooth_chunk_task
from .cluster import get_client, workers_per_host

__all__ = [
    "BatchResult",
    "BatchSettings",
    "DEFAULT_CHUNK_FRAMES",
    "SUMMARY",
    "expand_videos",
    "format_summary",
    "is_complete",
    "model_fingerprint",
    "output_names",
    "predict_ranges",
    "run_batch",
    "summary_table",
    "video_fingerprint",
    "work_rate",
]


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
        self.per_host = workers_per_host(client)
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
            from ..tracking.smoothing import window_frames

            run.window = window_frames(self.settings.smooth, run.fps, path=run.path)
            if run.window > run.frames:
                raise DustrackError(
                    f"the video has {run.frames} frames, fewer than the "
                    f"{run.window}-frame smoothing window",
                    run.path,
                )
        n_lab = len(self.model_fp["labels"])
        run.labels = list(self.model_fp["labels"])
        run.xy = np.full((run.frames, n_lab, 2), np.nan)
        run.conf = np.full((run.frames, n_lab), np.nan)
        run.status = "predicting"
        prepare_parts(run)
        ranges = predict_ranges(run.frames, self.settings.chunk_frames, self.settings.batch_size)
        for a, b in ranges:
            part = load_part(part_file(run, "predict", a, b))
            if part is not None and part[0].shape == (b - a, n_lab, 2):
                run.xy[a:b], run.conf[a:b] = part
                self._event("resumed", run, ("predict", a, b))
                continue
            self._submit(
                run,
                ("predict", a, b),
                predict_chunk_task,
                str(run.path),
                self.model_dir,
                self.model_fp["sha256"],
                a,
                b,
                self.settings.batch_size,
                self.settings.threads,
                self.per_host,
            )
        self._maybe_next(run)

    def _start_smooth(self, run: VideoRun) -> None:
        from ..tracking.smoothing import check_inputs, plan_chunks
        from ..tracking.smoothing.motion import reference_positions

        mode = self.settings.mode
        xy = check_inputs(run.frames, run.xy, run.window, mode, run.conf, run.labels, run.path)
        run.status = "smoothing"
        run.plan = plan_chunks(run.frames, run.window, mode, self.settings.chunk_frames)
        payload = xy if mode == "dustrack" else reference_positions(xy)
        extra = f"-{mode}-{run.window}"
        for c in run.plan:
            part = load_part(part_file(run, "smooth", c.start, c.stop, extra))
            if part is not None:
                run.results[c] = part
                self._event("resumed", run, ("smooth", c.start, c.stop))
                continue
            self._submit(
                run,
                ("smooth", mode, run.window, c.start, c.stop),
                smooth_chunk_task,
                str(run.path),
                mode,
                c,
                payload,
                run.window,
            )
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
        save_part(part_file(run, "predict", a, b), [result["xy"], result["confidence"]])
        self._maybe_next(run)

    def _got_smooth(self, run: VideoRun, what: tuple, result: dict) -> None:
        _, mode, window, start, stop = what
        chunk = next(c for c in run.plan if (c.start, c.stop) == (start, stop))
        total = sum(c.stop - c.start for c in run.plan)
        self._account(run, result, "smooth", (stop - start) / max(total, 1))
        run.results[chunk] = list(result["parts"])
        save_part(part_file(run, "smooth", start, stop, f"-{mode}-{window}"), result["parts"])
        self._maybe_next(run)

    def _write_raw(self, run: VideoRun) -> None:
        from ..io.table import from_array, write_points_csv

        table = from_array(run.xy, run.labels, source=PointSource.MODEL, confidence=run.conf)
        write_points_csv(table, output_paths(run, self.settings)["raw"], backup=False)
        finite = np.isfinite(run.conf)
        run.mean_confidence = float(run.conf[finite].mean()) if finite.any() else float("nan")

    def _write_smoothed(self, run: VideoRun) -> None:
        from ..io.table import from_array, write_points_csv

        out = combine_smoothing(
            run.xy,
            run.conf,
            run.plan,
            [run.results[c] for c in run.plan],
            run.window,
            self.settings.mode,
        )
        table = from_array(out, run.labels, source=PointSource.SMOOTHED, confidence=run.conf)
        write_points_csv(table, output_paths(run, self.settings)["smoothed"], backup=False)

    def _finish(self, run: VideoRun) -> None:
        run.frames_per_s = work_rate(run.frames, run.work)
        outputs = {
            k: {"file": p.name, "size": p.stat().st_size}
            for k, p in output_paths(run, self.settings).items()
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "fingerprint": run.fingerprint,
            "outputs": outputs,
            "frames": run.frames,
            "fps": run.fps,
            "window_frames": run.window or None,
            "seconds": run.seconds,
            "frames_per_s": run.frames_per_s,
            "mean_confidence": run.mean_confidence,
            "labels": run.labels,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_text_atomic(
            manifest_path(run.out, run.name), json.dumps(manifest, indent=1), backup=False
        )
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
            self.on_event(
                {"event": kind, "video": str(run.path), "task": what, "status": run.status}
            )
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
    from ..tracking.smoothing import combine_chunks

    return combine_chunks(xy, plan, results, window, mode, conf)


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
    settings: BatchSettings = BatchSettings(),  # noqa: B008 - frozen, so a shared default is safe
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
        Default: ``cluster.get_client(address)`` (a local cluster when ``address`` is None).
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
    out = _output_folder(out)
    runs = make_runs(paths, out, model_fp, settings)
    peak = {}
    if any(r.status == "pending" for r in runs):
        client = client if client is not None else get_client(address)
        batch = _Batch(
            client, runs, Path(model_dir).absolute(), model_fp, settings, progress, on_event, cancel
        )
        batch.run()
        peak = batch.peak_rss
        try:
            (out / PARTS).rmdir()  # only when empty: parts of unfinished videos stay
        except OSError:
            pass
    summary = summary_table(runs)
    write_atomic(out / SUMMARY, lambda p: summary.to_csv(p, index=False), backup=False)
    return BatchResult(summary=summary, wall_s=time.perf_counter() - t0, peak_rss=peak)


def _output_folder(out: str | os.PathLike) -> Path:
    out = check_destination(out, folder=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, out) from None
    return out
