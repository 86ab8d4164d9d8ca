"""Ultrasound-like augmentation of a training frame and its points (numpy + OpenCV).

Probe motion looks like a small rotation, zoom and shift of the whole image; gain, dynamic range
(contrast, gamma) and speckle change between scanners and settings; focus changes blur. The
same affine moves the image and its points so that labels stay on the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random changes (each drawn uniformly)."""

    rotate_deg: float = 8.0
    scale: float = 0.08
    shift: float = 0.04  # fraction of the image size
    gain: tuple[float, float] = (0.75, 1.3)
    contrast: tuple[float, float] = (0.75, 1.3)
    gamma: tuple[float, float] = (0.75, 1.35)
    speckle: float = 0.25  # std of the multiplicative noise
    blur_prob: float = 0.3
    blur_sigma: float = 1.0


def random_affine(shape: tuple[int, int], rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    """A 2x3 affine (for ``cv2.warpAffine``) rotating/zooming about the centre, then shifting."""
    h, w = shape
    angle = rng.uniform(-p.rotate_deg, p.rotate_deg)
    zoom = 1.0 + rng.uniform(-p.scale, p.scale)
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, zoom)
    m[0, 2] += rng.uniform(-p.shift, p.shift) * w
    m[1, 2] += rng.uniform(-p.shift, p.shift) * h
    return m


def apply_affine_points(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Move (x, y) points (..., 2) by a 2x3 affine (NaN stays NaN)."""
    xy = np.asarray(xy, dtype=np.float64)
    return xy @ m[:, :2].T + m[:, 2]


def intensity(img: np.ndarray, rng: np.random.Generator, p: AugmentParams) -> np.ndarray:
    """Gain, contrast, gamma, multiplicative speckle and blur on an image in 0..1."""
    img = img * rng.uniform(*p.gain)
    mean = float(img.mean())
    img = (img - mean) * rng.uniform(*p.contrast) + mean
    img = np.clip(img, 0.0, 1.0) ** rng.uniform(*p.gamma)
    if p.speckle > 0:
        # Speckle is multiplicative and spatially correlated over a pixel or two.
        noise = rng.standard_normal(img.shape).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.7) * (rng.uniform(0, p.speckle) / 0.4)
        img = img * (1.0 + noise)
    if rng.random() < p.blur_prob:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), rng.uniform(0.3, p.blur_sigma))
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def augment(
    image: np.ndarray, xy: np.ndarray, rng: np.random.Generator, p: AugmentParams = AugmentParams()
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one uint8 image (h, w) and its points (L, 2).

    Returns
    -------
    image : ndarray (h, w) float32 in 0..1
    xy : ndarray (L, 2)
        Moved points; NaN where the input was NaN or the point left the image.
    """
    h, w = image.shape
    m = random_affine((h, w), rng, p)
    warped = cv2.warpAffine(
        image.astype(np.float32) / 255.0,
        m,
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    moved = apply_affine_points(m, xy)
    outside = (moved[:, 0] < 0) | (moved[:, 0] > w - 1) | (moved[:, 1] < 0) | (moved[:, 1] > h - 1)
    moved[outside] = np.nan
    return intensity(warped, rng, p), moved
