"""Sub-pixel peak and confidence of a heatmap (numpy).

The peak is the probability-weighted mean in a small window around the most probable pixel:
soft-argmax without the pull of far-away clutter that a global expectation would suffer. The
confidence is the probability mass inside that window (0..1): a sharp single peak scores near 1,
a smeared or split distribution low.
"""

from __future__ import annotations

import numpy as np


def subpixel_peaks(prob: np.ndarray, radius: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of distributions ``prob`` (..., h, w) (each summing to 1).

    Returns
    -------
    xy : ndarray (..., 2)
        (x, y) in pixels of the grid.
    confidence : ndarray (...)
        Probability mass within ``radius`` of the most probable pixel, in 0..1.
    """
    prob = np.asarray(prob, dtype=np.float64)
    lead = prob.shape[:-2]
    h, w = prob.shape[-2:]
    flat = prob.reshape(-1, h, w)
    top = flat.reshape(len(flat), -1).argmax(axis=1)
    cy, cx = np.divmod(top, w)
    off = np.arange(-radius, radius + 1)
    ys = cy[:, None] + off[None, :]  # (n, k)
    xs = cx[:, None] + off[None, :]
    inside = (ys[:, :, None] >= 0) & (ys[:, :, None] < h) & (xs[:, None, :] >= 0) & (xs[:, None, :] < w)
    window = flat[
        np.arange(len(flat))[:, None, None], np.clip(ys, 0, h - 1)[:, :, None],
        np.clip(xs, 0, w - 1)[:, None, :],
    ] * inside
    mass = window.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    x = (window.sum(axis=1) * xs).sum(axis=1) / safe
    y = (window.sum(axis=2) * ys).sum(axis=1) / safe
    xy = np.stack([x, y], axis=-1).reshape(*lead, 2)
    return xy, np.clip(mass, 0.0, 1.0).reshape(lead)
