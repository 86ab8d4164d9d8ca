"""Sub-pixel point and confidence of a heatmap (numpy).

The point is the expectation of the distribution (soft-argmax): the quantity the loss trains
(see :mod:`.loss`), so it is sub-pixel by construction and unbiased where the model is sure. The
confidence is the probability mass within a small window around that point (0..1): a sharp
single peak scores near 1; a smeared or split distribution, whose expectation may fall between
two candidates, scores low.
"""

from __future__ import annotations

import numpy as np


def expectation(prob: np.ndarray) -> np.ndarray:
    """Expected (x, y) of distributions ``prob`` (..., h, w) -> (..., 2)."""
    h, w = prob.shape[-2:]
    x = (prob.sum(axis=-2) * np.arange(w)).sum(axis=-1)
    y = (prob.sum(axis=-1) * np.arange(h)).sum(axis=-1)
    return np.stack([x, y], axis=-1)


def window_mass(prob: np.ndarray, xy: np.ndarray, radius: int) -> np.ndarray:
    """Probability mass of ``prob`` (..., h, w) within ``radius`` pixels (square) of ``xy``."""
    h, w = prob.shape[-2:]
    flat = prob.reshape(-1, h, w)
    centre = np.rint(np.asarray(xy).reshape(-1, 2)).astype(np.int64)
    # Summed-area table: each window sum costs four lookups.
    sat = np.zeros((len(flat), h + 1, w + 1))
    sat[:, 1:, 1:] = flat.cumsum(axis=1).cumsum(axis=2)
    x0 = np.clip(centre[:, 0] - radius, 0, w)
    x1 = np.clip(centre[:, 0] + radius + 1, 0, w)
    y0 = np.clip(centre[:, 1] - radius, 0, h)
    y1 = np.clip(centre[:, 1] + radius + 1, 0, h)
    n = np.arange(len(flat))
    mass = sat[n, y1, x1] - sat[n, y0, x1] - sat[n, y1, x0] + sat[n, y0, x0]
    return mass.reshape(prob.shape[:-2])


def subpixel_peaks(prob: np.ndarray, radius: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Points and confidences of distributions ``prob`` (..., h, w) (each summing to 1).

    Returns
    -------
    xy : ndarray (..., 2)
        (x, y) in pixels of the grid.
    confidence : ndarray (...)
        Probability mass within ``radius`` of the point, in 0..1.
    """
    prob = np.asarray(prob, dtype=np.float64)
    xy = expectation(prob)
    return xy, np.clip(window_mass(prob, xy, radius), 0.0, 1.0)
