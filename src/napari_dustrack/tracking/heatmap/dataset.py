"""The training set: the curated frames of a video, at the model's working size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...errors import DustrackError
from ...io.sources import PointSource
from ...io.table import labels_of, training_rows, validate
from .geometry import resize_frame, to_working

MIN_FRAMES = 2
# Training weight of a label by how it was obtained: a person placed it (manual), a person
# accepted a prediction (reviewed), a person accepted an optical-flow point (scaled by the
# flow's own confidence: accepting a whole fill also accepts its unreliable stretches).
LABEL_WEIGHTS = {PointSource.MANUAL: 1.0, "reviewed": 0.8, PointSource.FLOW: 0.5}
MIN_FLOW_WEIGHT = 0.05


@dataclass
class TrainingSet:
    """Curated frames and their points on the working grid.

    Attributes
    ----------
    images : ndarray (n, h, w) uint8
    xy : ndarray (n, L, 2)
        (x, y) on the working grid, NaN where a label is missing (its loss is masked).
    frames : ndarray (n,) int
        Frame numbers in the video.
    labels : list of str
    full_shape : (int, int)
        (height, width) of the video frames.
    weights : ndarray (n, L) or None
        Loss weight of each point (:func:`label_weights`); None: all 1.
    """

    images: np.ndarray
    xy: np.ndarray
    frames: np.ndarray
    labels: list[str]
    full_shape: tuple[int, int]
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        return self.images.shape[1:3]


def curated_points(
    table: pd.DataFrame,
    labels: Sequence[str] | None = None,
    n_frames: int | None = None,
    path=None,
) -> tuple[pd.DataFrame, list[str]]:
    """The training rows (manual or reviewed) of ``table``, checked.

    Raises
    ------
    DustrackError
        No labels, a label without any example, fewer than two usable frames, or frames
        beyond the end of the video.
    """
    table = validate(table, path)
    rows = training_rows(table)
    labels = list(labels) if labels is not None else labels_of(rows)
    if not labels:
        raise DustrackError("no manual or reviewed points to train on", path)
    counts = rows["label"].value_counts()
    empty = [lab for lab in labels if counts.get(lab, 0) == 0]
    if empty:
        raise DustrackError(
            f"label(s) {', '.join(map(repr, empty))} have no manual or reviewed example; "
            "label at least one frame or remove the label",
            path,
        )
    rows = rows[rows["label"].isin(labels)]
    if n_frames is not None and len(rows) and int(rows["frame"].max()) >= n_frames:
        raise DustrackError(
            f"points on frame {int(rows['frame'].max())} but the video has {n_frames} frames", path
        )
    n_usable = rows["frame"].nunique()
    if n_usable < MIN_FRAMES:
        raise DustrackError(
            f"{n_usable} usable frame(s) with manual or reviewed points; at least {MIN_FRAMES} "
            "are needed to train",
            path,
        )
    return rows, labels


def label_weights(rows: pd.DataFrame) -> np.ndarray:
    """Loss weight per training row: manual > reviewed > accepted flow (x its confidence)."""
    source = rows["source"].to_numpy()
    conf = rows["confidence"].to_numpy(dtype=float) if "confidence" in rows else np.ones(len(rows))
    conf = np.clip(np.nan_to_num(conf, nan=1.0), MIN_FLOW_WEIGHT, 1.0)
    return np.select(
        [source == PointSource.MANUAL, source == PointSource.FLOW],
        [LABEL_WEIGHTS[PointSource.MANUAL], LABEL_WEIGHTS[PointSource.FLOW] * conf],
        LABEL_WEIGHTS["reviewed"],
    )


def build_training_set(
    frames,
    table: pd.DataFrame,
    size: tuple[int, int],
    labels: Sequence[str] | None = None,
    path=None,
) -> TrainingSet:
    """Read the curated frames (in order) and resize them and their points to ``size``.

    Parameters
    ----------
    frames : sequence of 2-D arrays
        Anything with ``len()`` and ``frames[i]`` (numpy/dask array, Cine).
    table : point table
        All points; only manual or reviewed rows are used.
    size : (int, int)
        Working (height, width).
    labels : list of str, optional
        Output channel order (default: labels of the curated rows in order of appearance).
    """
    rows, labels = curated_points(table, labels, len(frames), path)
    frame_ids = np.array(sorted(rows["frame"].unique()), dtype=np.int64)
    index = {lab: i for i, lab in enumerate(labels)}
    xy = np.full((len(frame_ids), len(labels), 2), np.nan)
    pos = np.searchsorted(frame_ids, rows["frame"].to_numpy())
    cols = rows["label"].map(index).to_numpy(dtype=np.int64)
    xy[pos, cols, 0] = rows["x"].to_numpy()
    xy[pos, cols, 1] = rows["y"].to_numpy()
    weights = np.zeros(xy.shape[:2])
    weights[pos, cols] = label_weights(rows)
    images = []
    full_shape = None
    for f in frame_ids:
        img = np.asarray(frames[int(f)])
        full_shape = img.shape[:2] if full_shape is None else full_shape
        images.append(resize_frame(img, size))
    return TrainingSet(
        images=np.stack(images),
        xy=to_working(xy, full_shape, size),
        frames=frame_ids,
        labels=labels,
        full_shape=tuple(int(v) for v in full_shape),
        weights=weights,
    )


def split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation); validation spread over the video (every k-th frame).

    With fewer than 5 frames there is no held-out set: validation reuses the training frames
    (the best checkpoint is then the one that fits them best).
    """
    idx = np.arange(n)
    n_val = int(round(n * val_fraction))
    if n < 5 or n_val < 1:
        return idx, idx
    # Evenly spaced with a random phase, so validation covers the whole cine.
    picks = np.unique(np.round(np.linspace(0, n - 1, n_val + 2)[1:-1] + rng.uniform(-0.5, 0.5)))
    val = np.clip(picks.astype(np.int64), 0, n - 1)
    train = np.setdiff1d(idx, val)
    return train, val
