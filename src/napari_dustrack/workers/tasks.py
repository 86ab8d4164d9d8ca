"""The functions a job runs in a worker process (submitted by reference through
:func:`.jobs.submit`): train, predict and rank frames for review. Each imports the model code
inside the worker, so that importing this module in the napari process imports no torch.
"""

from __future__ import annotations

import pandas as pd

from ..io.cine import open_frames
from ..io.sources import PointSource
from ..worker_env import prepare_worker
from .jobs import Channel


def train_task(
    video: str,
    table: pd.DataFrame,
    model_dir: str,
    config: dict | None = None,
    channel: Channel | None = None,
) -> dict:
    """Worker function: train (or retrain) the model in ``model_dir``; returns model.json."""
    prepare_worker()
    from ..tracking.heatmap import HeatmapConfig
    from ..tracking.heatmap.train import train

    channel = channel or Channel(None)
    cine = open_frames(video)
    try:
        return train(
            cine,
            table,
            model_dir,
            HeatmapConfig.from_dict(config or {}),
            video=str(video),
            progress=channel.progress,
            cancel=channel.cancel,
            log=channel.log,
        )
    finally:
        cine.close()


def predict_task(
    video: str,
    model_dir: str,
    out: str | None = None,
    config: dict | None = None,
    channel: Channel | None = None,
) -> pd.DataFrame:
    """Worker function: predict every frame; streams each batch as a ``result`` message.

    Writes the point table to ``out`` when given, and returns it.
    """
    prepare_worker()
    from ..io.table import write_points_csv
    from ..tracking.heatmap import HeatmapConfig
    from ..tracking.heatmap.predict import predict_video

    channel = channel or Channel(None)
    cfg = HeatmapConfig.from_dict(config or {})

    def on_batch(frames, xy, conf):
        channel.send(
            {
                "kind": "result",
                "frames": frames.tolist(),
                "xy": xy.tolist(),
                "confidence": conf.tolist(),
            }
        )

    cine = open_frames(video)
    try:
        table = predict_video(
            cine,
            model_dir,
            device=cfg.device,
            threads=cfg.threads,
            batch_size=cfg.predict_batch,
            progress=channel.progress,
            cancel=channel.cancel,
            on_batch=on_batch,
        )
    finally:
        cine.close()
    if out is not None:
        write_points_csv(table, out)
    return table


def review_task(
    video: str,
    table: pd.DataFrame,
    top: int = 20,
    exclude=(),
    channel: Channel | None = None,
    flow: pd.DataFrame | None = None,
):
    """Worker function: rank frames to review, leaving out ``exclude`` (the curated ones).

    ``flow``: the keyframe fill's rows (source ``flow``, with confidence); frames where it was
    unreliable come first, curated or not (an accepted unreliable flow point is a label the
    model learnt from: a person should look at it).
    """
    from ..tracking.flow_confidence import FLAG_BELOW
    from ..tracking.review import frames_to_review

    channel = channel or Channel(None)
    if flow is not None:
        flow = flow[flow["source"] == PointSource.FLOW]
        unsure = set(flow.loc[flow["confidence"] < FLAG_BELOW, "frame"].astype(int))
        exclude = [f for f in exclude if int(f) not in unsure]
    cine = open_frames(video)
    try:
        return frames_to_review(
            cine,
            table,
            top=top,
            exclude=exclude,
            flow=flow,
            progress=channel.progress,
            cancel=channel.cancel,
        )
    finally:
        cine.close()
