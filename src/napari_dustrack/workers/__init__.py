"""Work that runs in dask.distributed worker processes, and the caller's side of it.

- :mod:`.cluster`: the one client (a local cluster started on demand, or a scheduler address);
- :mod:`.jobs`: one task with progress messages and Cancel (:func:`submit`, :class:`Job`,
  :class:`Channel`);
- :mod:`.tasks`: what the GUI and the CLI run in a worker (train, predict, review);
- :mod:`.smoothing`: the smoother's image work in chunks on the cluster (``smooth_chunked``);
- :mod:`.batch`: prediction and smoothing of many and long videos, split into keyed chunk tasks
  (:mod:`.batch_inputs`, :mod:`.batch_tasks`, :mod:`.batch_store`).

Nothing here imports torch in the calling process; the batch modules are imported on use.
"""

from .cluster import close_clients, get_client
from .jobs import Channel, Job, submit
from .tasks import predict_task, review_task, train_task

__all__ = [
    "Channel",
    "Job",
    "close_clients",
    "get_client",
    "predict_task",
    "review_task",
    "submit",
    "train_task",
]
