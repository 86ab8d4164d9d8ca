"""Heavy work (training, prediction) in worker processes through dask.distributed.

The napari process never imports torch: it submits functions *by reference* (module-level
functions of :mod:`.tasks`, which import the model code inside the worker) with paths and small
tables as inputs. A worker that crashes takes nothing of the user's annotations with it.

Progress and Cancel cross the process boundary through the scheduler: each job has a
``distributed.Queue`` (worker -> caller: progress, loss values, streamed predictions) and a
``distributed.Event`` (caller -> worker: cancel). The client comes from :mod:`.cluster`.

This module imports neither torch nor the model code.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from ..errors import Cancelled, DustrackError, from_os_error
from .cluster import get_client

THROTTLE_S = 0.2  # progress messages at most this often (except results, which all arrive)
CANCEL_POLL_S = 0.5  # the worker asks the scheduler about Cancel at most this often


# ----------------------------------------------------------------------------- caller side
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
        self.future = client.submit(
            _run_job, func, self.id, *args, key=self.id, pure=False, **kwargs
        )

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


def submit(
    func: Callable,
    *args,
    address: str | None = None,
    client=None,
    cancel: Callable[[], bool] | None = None,
    **kwargs,
) -> Job:
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
        self.send({"kind": "progress", "done": int(done), "total": int(total)}, force=done >= total)

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
