"""Heavy work (training, prediction) in worker processes through dask.distributed.

The napari process never imports torch: it submits functions *by reference* (module-level
functions of this module, which import the model code inside the worker) with paths and small
tables as inputs. A worker that crashes takes nothing of the user's annotations with it.

Progress and Cancel cross the process boundary through the scheduler: each job has a
``distributed.Queue`` (worker -> caller: progress, loss values, streamed predictions) and a
``distributed.Event`` (caller -> worker: cancel). Clusters: a :class:`distributed.LocalCluster`
(``processes=True``) started on demand and kept for later jobs, or an existing scheduler
given by address (``--scheduler ADDRESS``).

This module imports neither torch nor the model code at module level.
"""

from __future__ import annotations

import atexit
import threading
import time
import uuid
from typing import Any, Callable

import pandas as pd

from .errors import Cancelled, DustrackError, from_os_error
from .worker_env import prepare_worker

_clients: dict[str, Any] = {}
_lock = threading.Lock()
THROTTLE_S = 0.2  # progress messages at most this often (except results, which all arrive)
CANCEL_POLL_S = 0.5  # the worker asks the scheduler about Cancel at most this often
STARTUP_TIMEOUT_S = 90.0  # a local worker process that has not started by then never will
NO_MAIN_GUARD = ("worker processes did not start within {:.0f} s. If napari runs from a script, "
                 "put the script's code under `if __name__ == \"__main__\":` (worker processes "
                 "re-import it); or give a dask scheduler address under 'run on'")


# ----------------------------------------------------------------------------- caller side
def get_client(address: str | None = None, *, timeout: float = STARTUP_TIMEOUT_S,
               cancel: Callable[[], bool] | None = None):
    """A client for ``address``, or for a local cluster of worker processes started on demand.

    Clients are kept and reused; :func:`close_clients` (also run at exit) shuts them down.
    Starting waits at most ``timeout`` seconds (DustrackError) and stops waiting as soon as
    ``cancel()`` is true (Cancelled); a start-up left behind finishes or fails on its own.
    """
    key = address or "local"
    with _lock:
        client = _clients.get(key)
        if client is not None and client.status == "running":
            return client
    outcome: dict[str, Any] = {}

    def start():
        try:
            outcome["client"] = _connect(address)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome["error"] = exc

    thread = threading.Thread(target=start, name="dustrack-cluster-start", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while thread.is_alive():
        thread.join(0.1)
        if cancel is not None and cancel():
            raise Cancelled()  # the user gave up waiting for the worker processes
        if time.monotonic() > deadline:
            raise DustrackError(NO_MAIN_GUARD.format(timeout), address)
    if "error" in outcome:
        raise outcome["error"]
    with _lock:
        _clients[key] = outcome["client"]
    return outcome["client"]


def _connect(address: str | None):
    from distributed import Client, LocalCluster

    try:
        if address:
            return Client(address, timeout="10s", set_as_default=False)
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
            memory_limit=0,  # torch manages its own memory; do not let the nanny kill it
        )
        return Client(cluster, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise DustrackError(f"cannot reach the dask scheduler ({exc})", address) from None


def close_clients() -> None:
    """Close every client (and the local clusters this process started).

    distributed's warnings while it stops workers (e.g. "Worker process still alive after 4
    seconds, killing" on a busy machine) are held back: they say nothing to the user.
    """
    import logging

    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _close_all()
    finally:
        quiet.setLevel(level)


def _close_all() -> None:
    with _lock:
        for client in _clients.values():
            cluster = client.cluster if hasattr(client, "cluster") else None
            try:
                client.close()
                if cluster is not None:
                    cluster.close()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        _clients.clear()


atexit.register(close_clients)


class Job:
    """A task running in a worker, with its message queue and cancel flag.

    Attributes
    ----------
    future : distributed.Future
    id : str
    """

    def __init__(self, client, func: Callable, *args, **kwargs):
        from distributed import Event, Queue

        self.id = f"dustrack-{uuid.uuid4().hex}"
        self.client = client
        self._queue = Queue(f"{self.id}-messages", client=client)
        self._cancel = Event(f"{self.id}-cancel", client=client)
        self.future = client.submit(_run_job, func, self.id, *args, key=self.id, pure=False, **kwargs)

    def messages(self) -> list[dict]:
        """Messages sent so far and not yet read (never blocks for long)."""
        try:
            return list(self._queue.get(batch=True))
        except Exception:  # noqa: BLE001 - the scheduler is gone; the future tells why
            return []

    def cancel(self) -> None:
        """Ask the worker to stop; it finishes its current step (seconds at most)."""
        self._cancel.set()

    def done(self) -> bool:
        return self.future.done()

    def result(self, timeout: float | None = None):
        """The task's return value; a worker's DustrackError/Cancelled is raised here."""
        value = self.future.result(timeout=timeout)
        if isinstance(value, _Failed):
            raise value.error
        return value

    def wait(self, on_message: Callable[[dict], None] | None = None, poll_s: float = 0.2):
        """Block until done, passing each message to ``on_message``; return the result.

        Ctrl+C asks the worker to cancel and keeps waiting for it to stop cleanly.
        """
        cancelling = False
        while True:
            try:
                finished = self.future.done()
                for msg in self.messages():
                    if on_message:
                        on_message(msg)
                if finished:
                    for msg in self.messages():
                        if on_message:
                            on_message(msg)
                    return self.result()
                time.sleep(poll_s)
            except KeyboardInterrupt:
                if cancelling:
                    raise
                cancelling = True
                self.cancel()


def submit(func: Callable, *args, address: str | None = None, client=None,
           cancel: Callable[[], bool] | None = None, **kwargs) -> Job:
    """Run ``func(*args, channel=..., **kwargs)`` in a worker process; see :class:`Job`.

    ``cancel`` stops waiting for the worker processes to start (see :func:`get_client`).
    """
    return Job(client or get_client(address, cancel=cancel), func, *args, **kwargs)


# ----------------------------------------------------------------------------- worker side
class _PolledEvent:
    """A ``threading.Event``-like view of the job's distributed Event, asked at most every
    ``CANCEL_POLL_S`` seconds so that checking it every step costs nothing."""

    def __init__(self, event):
        self._event = event
        self._last = 0.0
        self._set = False

    def is_set(self) -> bool:
        now = time.monotonic()
        if not self._set and now - self._last >= CANCEL_POLL_S:
            self._last = now
            try:
                self._set = bool(self._event.is_set())
            except Exception:  # noqa: BLE001 - scheduler unreachable: keep working
                pass
        return self._set


class Channel:
    """What a job function gets to talk to its caller: progress, log, results, cancel."""

    def __init__(self, job_id: str | None):
        self.cancel = threading.Event()
        self._queue = None
        self._last = 0.0
        if job_id is not None:
            from distributed import Event, Queue
            from distributed import get_client as worker_client

            client = worker_client()
            self._queue = Queue(f"{job_id}-messages", client=client)
            self.cancel = _PolledEvent(Event(f"{job_id}-cancel", client=client))

    def send(self, msg: dict, force: bool = True) -> None:
        if self._queue is None:
            return
        now = time.monotonic()
        if not force and now - self._last < THROTTLE_S:
            return
        self._last = now
        self._queue.put(msg)

    def progress(self, done: int, total: int) -> None:
        self.send({"kind": "progress", "done": int(done), "total": int(total)},
                  force=done >= total)

    def log(self, entry: dict) -> None:
        self.send({"kind": "log", **{k: float(v) for k, v in entry.items()}})


class _Failed:
    """An expected ending of a job (bad input, Cancel) carried back as a *result*: raised in the
    worker it would make distributed log a multi-line "Compute Failed" block with the task's
    arguments before the caller's one-line message."""

    def __init__(self, error: BaseException):
        self.error = error


def _run_job(func: Callable, job_id: str, *args, **kwargs):
    channel = Channel(job_id)
    try:
        return func(*args, channel=channel, **kwargs)
    except (DustrackError, Cancelled) as exc:
        return _Failed(exc)
    except OSError as exc:  # a file the worker cannot read or write: the user's to fix
        return _Failed(from_os_error(exc))


def open_frames(path: str):
    """Open a video lazily in the worker (frames read in order as needed)."""
    from .io.cine import open_cine

    return open_cine(path, frame_cache=False)  # the worker reads each frame once or twice


def train_task(video: str, table: pd.DataFrame, model_dir: str, config: dict | None = None,
               channel: Channel | None = None) -> dict:
    """Worker function: train (or retrain) the model in ``model_dir``; returns model.json."""
    prepare_worker()
    from .tracking.heatmap import HeatmapConfig
    from .tracking.heatmap.train import train

    channel = channel or Channel(None)
    cine = open_frames(video)
    try:
        return train(
            cine, table, model_dir, HeatmapConfig.from_dict(config or {}), video=str(video),
            progress=channel.progress, cancel=channel.cancel, log=channel.log,
        )
    finally:
        cine.close()


def predict_task(video: str, model_dir: str, out: str | None = None, config: dict | None = None,
                 channel: Channel | None = None) -> pd.DataFrame:
    """Worker function: predict every frame; streams each batch as a ``result`` message.

    Writes the point table to ``out`` when given, and returns it.
    """
    prepare_worker()
    from .io.table import write_points_csv
    from .tracking.heatmap import HeatmapConfig
    from .tracking.heatmap.predict import predict_video

    channel = channel or Channel(None)
    cfg = HeatmapConfig.from_dict(config or {})

    def on_batch(frames, xy, conf):
        channel.send({"kind": "result", "frames": frames.tolist(), "xy": xy.tolist(),
                      "confidence": conf.tolist()})

    cine = open_frames(video)
    try:
        table = predict_video(cine, model_dir, device=cfg.device, threads=cfg.threads,
                              batch_size=cfg.predict_batch, progress=channel.progress,
                              cancel=channel.cancel, on_batch=on_batch)
    finally:
        cine.close()
    if out is not None:
        write_points_csv(table, out)
    return table


def review_task(video: str, table: pd.DataFrame, top: int = 20, exclude=(),
                channel: Channel | None = None, flow: pd.DataFrame | None = None):
    """Worker function: rank frames to review, leaving out ``exclude`` (the curated ones).

    ``flow``: the keyframe fill's rows (source ``flow``, with confidence); frames where it was
    unreliable come first, curated or not (an accepted unreliable flow point is a label the
    model learnt from: a person should look at it).
    """
    from .tracking.flow_confidence import FLAG_BELOW
    from .tracking.review import frames_to_review

    channel = channel or Channel(None)
    if flow is not None:
        flow = flow[flow["source"] == "flow"]
        unsure = set(flow.loc[flow["confidence"] < FLAG_BELOW, "frame"].astype(int))
        exclude = [f for f in exclude if int(f) not in unsure]
    cine = open_frames(video)
    try:
        return frames_to_review(cine, table, top=top, exclude=exclude, flow=flow,
                                progress=channel.progress, cancel=channel.cancel)
    finally:
        cine.close()
