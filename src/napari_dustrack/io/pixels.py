"""Small helpers shared by the cine readers: uint8 scaling, grayscale, colour, display contrast.

:func:`to_gray` is the one rule that turns colour frames into the grey frames every algorithm
reads, and :func:`to_gray_u8` the uint8 image the optical flow works on; colour is kept for
display only (``open_cine(rgb=True)``).
"""

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


def to_gray_u8(frame) -> np.ndarray:
    """A frame as a contiguous uint8 grey image (what optical flow works on).

    Grey uint8 frames pass through untouched. Colour goes through :func:`to_gray`. Other dtypes
    are taken as grey levels 0..255 (clipped, NaN as 0), except float frames whose values all
    lie in 0..1, which are taken as intensities and scaled to 0..255: truncating those would
    leave only 0 and 1.
    """
    img = to_gray(np.asarray(frame))
    if img.dtype != np.uint8:
        if img.dtype.kind == "f":
            img = np.nan_to_num(img)
            if img.size and 0.0 <= img.min() and img.max() <= 1.0:
                img = img * 255.0 + 0.5
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


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


_COLOUR_DIFF = 40  # channel difference (grey levels) that is colour, not codec noise
_COLOUR_MIN_PIXELS = 20


def has_colour(frame: np.ndarray) -> bool:
    """True when an RGB frame holds real colour (Doppler, coloured calipers), not grey in RGB.

    A few coloured pixels are enough: a scanner's calipers cover a tiny part of the frame.
    """
    import cv2

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] < 3:
        return False
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    r, g, b = cv2.split(np.ascontiguousarray(frame[..., :3]))
    # the largest channel difference, max - min over the channels, in one pass each (1080p:
    # ~5 ms where int16 numpy took ~400 ms)
    spread = cv2.max(cv2.max(cv2.absdiff(r, g), cv2.absdiff(g, b)), cv2.absdiff(r, b))
    return cv2.countNonZero((spread >= _COLOUR_DIFF).view(np.uint8)) >= _COLOUR_MIN_PIXELS


def fit_frame(frame: np.ndarray, shape) -> np.ndarray:
    """``frame`` cut or zero-padded (bottom/right) to ``shape[:2]``; pixels keep their place."""
    h, w = int(shape[0]), int(shape[1])
    if frame.shape[:2] == (h, w):
        return frame
    out = np.zeros((h, w, *frame.shape[2:]), dtype=frame.dtype)
    ch, cw = min(h, frame.shape[0]), min(w, frame.shape[1])
    out[:ch, :cw] = frame[:ch, :cw]
    return out


def contrast_limits(frames, *, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Display contrast limits from intensity percentiles of a few frames (dark cines).

    Parameters
    ----------
    frames : sequence of uint8 frames
        A small sample (e.g. 3-8 frames); every 4th pixel is used.
    low, high : float
        Percentiles mapped to black and white.

    Returns
    -------
    (lo, hi) : floats with ``hi > lo``, within 0..255.
    """
    values = np.concatenate([np.asarray(to_gray(np.asarray(f))).ravel()[::4] for f in frames])
    if not values.size:
        return 0.0, 255.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    if hi - lo < 8:  # flat sample: a narrow window would only show noise
        return 0.0, 255.0
    return lo, hi


def clahe(frame: np.ndarray, *, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation, for display only (never tracking).

    Grey frames are equalised directly; RGB frames on their lightness (LAB), keeping colour.
    """
    import cv2

    op = cv2.createCLAHE(clipLimit=float(clip), tileGridSize=(int(tiles), int(tiles)))
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if frame.ndim == 2:
        return op.apply(frame)
    lab = cv2.cvtColor(frame[..., :3], cv2.COLOR_RGB2LAB)
    lab[..., 0] = op.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
