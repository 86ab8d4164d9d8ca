"""Prediction: stream a video through the model in batches, in frame order."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from ...errors import raise_if_cancelled
from ...io.region import crop_frames
from ...io.sources import PointSource
from ...io.table import from_array
from .config import HeatmapConfig, pick_device, set_threads
from .geometry import resize_frame, to_full
from .loss import spatial_softmax
from .peaks import subpixel_peaks
from .store import LoadedModel, load_model

OnBatch = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def predict(
    frames,
    model: LoadedModel,
    batch_size: int = 16,
    start: int = 0,
    stop: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    on_batch: OnBatch | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict every frame in ``start:stop``.

    Parameters
    ----------
    frames : sequence of 2-D arrays
        Visited in order (fast for a lazy video reader).
    model : LoadedModel
    on_batch : callable, optional
        ``on_batch(frame_numbers (b,), xy (b, L, 2), confidence (b, L))`` after each batch,
        for results that appear while the rest is computed.

    Returns
    -------
    xy : ndarray (n, L, 2)
        (x, y) in video pixels for frames ``start..stop-1``.
    confidence : ndarray (n, L) in 0..1

    Raises
    ------
    DustrackError
        Frames smaller than the model's working size.
    Cancelled
        ``cancel`` was set; ``partial`` holds ``(xy, confidence)`` with NaN where not done.
    """
    stop = len(frames) if stop is None else min(stop, len(frames))
    size = model.working_size
    radius = int(model.meta.get("config", {}).get("peak_radius", 5))
    norm = model.meta["normalisation"]
    device = next(model.net.parameters()).device
    n_labels = len(model.labels)
    xy = np.full((max(0, stop - start), n_labels, 2), np.nan)
    conf = np.full((max(0, stop - start), n_labels), np.nan)
    full_shape = None
    frames, offset = crop_frames(frames)  # the ultrasound image region; offset back to full
    for b0 in range(start, stop, batch_size):
        raise_if_cancelled(cancel, (xy, conf))
        ids = np.arange(b0, min(b0 + batch_size, stop))
        images = []
        for i in ids:
            frame = np.asarray(frames[int(i)])
            if full_shape is None:
                full_shape = frame.shape[:2]
                HeatmapConfig(working_size=size).working_size_for(full_shape)  # size check
            images.append(resize_frame(frame, size))
        x = (np.stack(images).astype(np.float32) / 255.0 - norm["mean"]) / norm["std"]
        with torch.inference_mode():
            prob = spatial_softmax(model.net(torch.from_numpy(x[:, None]).to(device)))
        peak, c = subpixel_peaks(prob.cpu().numpy(), radius)
        xy[ids - start] = to_full(peak, full_shape, size) + offset
        conf[ids - start] = c
        if on_batch:
            on_batch(ids, xy[ids - start], conf[ids - start])
        if progress:
            progress(int(ids[-1] - start + 1), stop - start)
    return xy, conf


def predict_video(
    frames,
    model_dir,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 16,
    progress=None,
    cancel=None,
    on_batch=None,
) -> pd.DataFrame:
    """Load ``model_dir`` and predict every frame; a point table with source ``model``."""
    set_threads(threads)
    model = load_model(model_dir, device=pick_device(device))
    xy, conf = predict(
        frames, model, batch_size, progress=progress, cancel=cancel, on_batch=on_batch
    )
    return from_array(xy, model.labels, source=PointSource.MODEL, confidence=conf)
