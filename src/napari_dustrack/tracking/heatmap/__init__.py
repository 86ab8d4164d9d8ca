"""U-Net heatmap model: train on curated frames, predict every frame with a confidence.

Importing this package does not import torch; the modules that need it (``model``, ``loss``,
``train``, ``predict``, ``store``) import it themselves, and they run in worker processes
(see :mod:`napari_dustrack.workers`), never in the napari process; those workers set their OpenMP
wait policy themselves (:mod:`napari_dustrack.worker_env`).
"""

from .config import HeatmapConfig

__all__ = ["HeatmapConfig"]
