"""The environment of the worker processes that run torch (training and prediction).

OpenMP threads that wait for each other by spinning make training up to 10x slower on a machine
whose cores are busy with other work (napari itself, other jobs); with ``OMP_WAIT_POLICY=PASSIVE``
waiting threads sleep instead. The setting must be made before torch loads its OpenMP runtime,
and only in the workers: importing the package (in napari, in a script) leaves the importing
process's environment alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

__all__ = ["WORKER_ENV", "prepare_worker", "worker_env"]

WORKER_ENV: Mapping[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def worker_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`WORKER_ENV` where unset.

    For starting a worker process (e.g. a dask ``Nanny``'s ``env``); a value the user set wins.
    """
    env = dict(os.environ if base is None else base)
    for key, value in WORKER_ENV.items():
        env.setdefault(key, value)
    return env


def prepare_worker(environ: MutableMapping[str, str] | None = None) -> None:
    """Call first in a worker task that may import torch: :data:`WORKER_ENV` where unset."""
    environ = os.environ if environ is None else environ
    for key, value in WORKER_ENV.items():
        environ.setdefault(key, value)
