"""U-Net heatmap model: train on curated frames, predict every frame with a confidence.

Importing this package does not import torch; the modules that need it (``model``, ``loss``,
``train``, ``predict``, ``store``) import it themselves, and they run in worker processes
(see :mod:`napari_dustrack.jobs`), never in the napari process.
"""

import os

# OpenMP threads that wait for each other by spinning make training up to 10x slower on a
# machine whose cores are busy with other work (napari itself, other jobs). Waiting threads
# sleep instead; this must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import HeatmapConfig  # noqa: E402

__all__ = ["HeatmapConfig"]
