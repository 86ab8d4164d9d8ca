"""The one dask.distributed client of this process: a local cluster of worker processes started
on demand and kept for later jobs, or an existing scheduler given by address (``--scheduler
ADDRESS``). Both the GUI's and the CLI's jobs (:mod:`.jobs`) and a batch (:mod:`.batch`) get
their client here.

This module imports neither torch nor the model code.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import Cancelled, DustrackError

_clients: dict[str, Any] = {}
_lock = threading.Lock()
STARTUP_TIMEOUT_S = 90.0  # a local worker process that has not started by then never will
NO_MAIN_GUARD = (
    "worker processes did not start within {:.0f} s. If napari runs from a script, "
    'put the script\'s code under `if __name__ == "__main__":` (worker processes '
    "re-import it); or give a dask scheduler address under 'run on'"
)


def get_client(
    address: str | None = None,
    *,
    timeout: float = STARTUP_TIMEOUT_S,
    cancel: Callable[[], bool] | None = None,
):
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
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
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


def workers_per_host(client) -> dict[str, int]:
    """How many workers of ``client``'s cluster run on each host (they share its cores)."""
    hosts: dict[str, int] = {}
    for addr in client.scheduler_info().get("workers", {}):
        host = addr.rsplit(":", 1)[0]
        hosts[host] = hosts.get(host, 0) + 1
    return hosts
