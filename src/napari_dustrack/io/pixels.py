"""Small helpers shared by the cine readers: uint8 scaling, grayscale, frame numbers."""

from __future__ import annotations

import numpy as np


class Scaler:
    """Map frames of any numeric dtype to uint8 with one fixed range for the whole cine.

    The range comes from a few sampled frames (never the whole cine), so frames stay
    comparable over time; uint8 data passes through untouched.

    Parameters
    ----------
    dtype : numpy dtype
        The source dtype.
    samples : list of np.ndarray
        A few frames to take the range from (ignored for uint8).
    """

    def __init__(self, dtype, samples=()):
        self.dtype = np.dtype(dtype)
        self.lo, self.hi = 0.0, 255.0
        if self.dtype != np.uint8 and len(samples):
            values = np.concatenate([np.asarray(s, dtype=np.float64).ravel()[::7] for s in samples])
            values = values[np.isfinite(values)]
            if values.size:
                self.lo, self.hi = float(values.min()), float(values.max())
            if self.hi <= self.lo:
                self.hi = self.lo + 1.0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.dtype == np.uint8:
            return frame
        scaled = (np.asarray(frame, dtype=np.float32) - self.lo) * (255.0 / (self.hi - self.lo))
        return np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)


def to_gray(frame: np.ndarray) -> np.ndarray:
    """``(H, W)`` from gray, ``(H, W, 1)``, RGB or RGBA frames (ITU-R 601 luma weights)."""
    if frame.ndim == 2:
        return frame
    if frame.shape[-1] == 1:
        return frame[..., 0]
    rgb = np.asarray(frame[..., :3], dtype=np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if frame.dtype == np.uint8:
        return np.clip(gray + 0.5, 0, 255).astype(np.uint8)
    return gray.astype(frame.dtype)


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` from grayscale, RGB or RGBA."""
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=-1)
    if frame.shape[-1] == 1:
        return np.repeat(frame, 3, axis=-1)
    return frame[..., :3]


def check_frame_index(i, n: int) -> int:
    """``i`` as a frame number in ``0..n-1`` (negative counts from the end), else IndexError."""
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"frame {i} out of range 0..{n - 1}")
    return i
