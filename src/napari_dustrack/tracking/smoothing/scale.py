"""The image scale at which optical flow follows the speckle.

LK with a fixed window (DUSTrack's 45 px, 2 pyramid levels) works when the window holds many
speckle grains. Screen recordings and upscaled exports show the same speckle several times
larger in pixels; there the window holds a handful of blurred grains and LK drifts (on a
simulated cine upscaled 4.2 times, its error per frame grows from 0.2 px to 3 px). Running
LK on the frames shrunk back to the speckle's own scale restores its accuracy and costs a
fraction of the work. ``fast`` and ``fusion`` do that; ``dustrack`` keeps DUSTrack's pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..lk import to_gray_u8

#: grain size (px, half-maximum width of the speckle autocorrelation) LK's default window suits
TARGET_GRAIN = 3.0
MAX_SHRINK = 4


def speckle_grain(image: np.ndarray, crop: int = 512) -> float:
    """Speckle grain size in pixels: half-maximum width of the autocorrelation, x and y mean.

    The anatomy (structure larger than 1/32 of the image) is removed first, so what is
    measured is the texture LK locks on to; a central crop of at most ``crop`` pixels square
    keeps it cheap on large frames.
    """
    img = to_gray_u8(image)
    sigma = max(img.shape) / 32.0
    h, w = img.shape
    y0, x0 = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    img = img[y0 : y0 + crop, x0 : x0 + crop].astype(np.float32)
    detail = img - _low_pass(img, sigma)
    detail -= detail.mean()
    power = np.abs(np.fft.rfft2(detail)) ** 2
    auto = np.fft.irfft2(power, s=detail.shape)
    if auto[0, 0] <= 0:
        return 0.0
    auto /= auto[0, 0]
    widths = []
    for profile in (auto[0, : detail.shape[1] // 2], auto[: detail.shape[0] // 2, 0]):
        below = np.flatnonzero(profile < 0.5)
        widths.append(float(below[0]) if below.size else float(len(profile)))
    return float(np.mean(widths))


def _low_pass(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of width ``sigma``, computed at a resolution the blur makes enough."""
    k = max(1, int(sigma // 4))
    h, w = img.shape
    small = cv2.resize(img, (max(w // k, 1), max(h // k, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / k)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def auto_shrink(frames, n_samples: int = 2) -> int:
    """The integer factor that brings the speckle of ``frames`` to LK's scale (1 = as is).

    Measured on the first ``n_samples`` frames (the grain is a property of the scanner and
    the export, not of the moment; the first frames cost no seek); never shrinks an image
    below 128 px nor by more than :data:`MAX_SHRINK`.
    """
    grains = [speckle_grain(np.asarray(frames[i])) for i in range(min(n_samples, len(frames)))]
    factor = int(round(float(np.mean(grains)) / TARGET_GRAIN))
    shape = np.shape(frames[0])[:2]
    factor = min(factor, MAX_SHRINK, min(shape) // 128)
    return max(factor, 1)


def shrink_frame(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` shrunk by an integer factor (area average); unchanged for 1."""
    if factor <= 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)


def to_shrunk(xy: np.ndarray, factor: int) -> np.ndarray:
    """Full-size pixel positions on the shrunk image (pixel centres stay centres)."""
    return (xy + 0.5) / factor - 0.5 if factor > 1 else xy
