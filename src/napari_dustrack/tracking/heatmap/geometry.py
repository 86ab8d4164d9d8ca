"""Frames and coordinates between the video's pixels and the model's working grid.

Both grids put integer coordinates at pixel centres, so a resize by ``s`` maps
``x_full = (x_work + 0.5) * s - 0.5`` (the mapping ``cv2.resize`` itself uses).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..lk import to_gray_u8


def resize_frame(frame, size: tuple[int, int]) -> np.ndarray:
    """A frame as uint8 grayscale of ``size`` (height, width); area averaging when shrinking."""
    img = to_gray_u8(frame)
    h, w = size
    if img.shape == (h, w):
        return img
    shrink = img.shape[0] >= h and img.shape[1] >= w
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _factors(full_shape, size) -> np.ndarray:
    return np.array([full_shape[1] / size[1], full_shape[0] / size[0]], dtype=np.float64)


def to_working(xy: np.ndarray, full_shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(x, y) in video pixels -> working-grid pixels (NaN stays NaN)."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) / _factors(full_shape, size) - 0.5


def to_full(xy: np.ndarray, full_shape: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(x, y) in working-grid pixels -> video pixels (NaN stays NaN)."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) * _factors(full_shape, size) - 0.5
