"""The ultrasound image region of a cine: where the image is, as opposed to the screen around it.

Scanner exports and screen captures hold more than the image: burned-in patient text, the
scanner's side panel, the depth ruler. Those must not be tracked, trained on or exported.

- DICOM: the Sequence of Ultrasound Regions (0018,6011) says where each region is. The 2-D
  tissue (B-mode) region is chosen; Doppler, M-mode and waveform regions are left out with a
  note. Regions that do not fit the image are ignored (the whole frame is used).
- Videos and image stacks: the image changes from frame to frame (speckle, motion) while the
  border, text and rulers stay still. The region is the bounding box of the largest connected
  area of pixels that change over a sample of frames.

Coordinates stay in the full frame everywhere: a region only says which part of the frame an
algorithm reads (:func:`crop_frames` + an offset) or which part an export shows
(:meth:`Region.mask`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# DICOM Region Spatial Format (0018,6012) and Region Data Type (0018,6014) codes
SPATIAL_2D = 1
_SPATIAL_NAMES = {
    0: "none",
    1: "2-D",
    2: "M-mode",
    3: "spectral Doppler",
    4: "waveform",
    5: "graphics",
}
_TISSUE = 1
_MOVING_RANGE = 10  # grey levels a pixel must change by over the sample to count as image
_MIN_AREA = 0.05  # a region under 5 % of the frame is not believed
_MIN_BORDER = 0.02  # crop only when at least 2 % of the frame lies outside the region
_INK, _MIN_INK = 40, 0.005  # still pixels brighter than this are text or rulers, not background


@dataclass(frozen=True)
class Region:
    """A rectangle of the frame, half-open in pixels: rows ``y0:y1``, columns ``x0:x1``.

    Attributes
    ----------
    y0, x0, y1, x1 : int
    source : str
        ``dicom`` (Sequence of Ultrasound Regions), ``motion`` (detected from the frames) or
        ``full`` (the whole frame).
    """

    y0: int
    x0: int
    y1: int
    x1: int
    source: str = "full"

    @classmethod
    def full(cls, frame_shape) -> Region:
        """The whole frame of shape ``(H, W[, C])``."""
        return cls(0, 0, int(frame_shape[0]), int(frame_shape[1]), "full")

    @property
    def offset(self) -> tuple[int, int]:
        """``(x0, y0)``: add it to coordinates found in a cropped frame."""
        return self.x0, self.y0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def is_full(self, frame_shape) -> bool:
        return (self.y0, self.x0, self.y1, self.x1) == (0, 0, *map(int, frame_shape[:2]))

    def mask(self, frame_shape) -> np.ndarray:
        """Boolean ``(H, W)`` mask, True inside the region."""
        inside = np.zeros(tuple(int(v) for v in frame_shape[:2]), dtype=bool)
        inside[self.slices] = True
        return inside

    def outline(self) -> np.ndarray:
        """The rectangle's corners ``(y, x)`` on the pixel edges, for a napari Shapes layer."""
        top, left, bottom, right = self.y0 - 0.5, self.x0 - 0.5, self.y1 - 0.5, self.x1 - 0.5
        return np.array([[top, left], [top, right], [bottom, right], [bottom, left]])

    def scaled(self, factor: int, frame_shape) -> Region:
        """This region found on frames subsampled by ``factor``, in full-frame pixels."""
        if self.source == "full":
            return Region.full(frame_shape)
        h, w = int(frame_shape[0]), int(frame_shape[1])
        y0, x0 = self.y0 * factor, self.x0 * factor
        y1, x1 = min(h, self.y1 * factor), min(w, self.x1 * factor)
        return Region(y0, x0, y1, x1, self.source)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Region:
        return cls(int(d["y0"]), int(d["x0"]), int(d["y1"]), int(d["x1"]), str(d["source"]))


def _code(item, keyword: str) -> int | None:
    try:
        return int(item.get(keyword))
    except (TypeError, ValueError):
        return None


def pick_dicom_region(regions, frame_shape) -> tuple[object | None, list[str]]:
    """The 2-D tissue item of a Sequence of Ultrasound Regions, and notes on what was left out.

    Parameters
    ----------
    regions : sequence of pydicom Datasets
    frame_shape : (H, W)

    Returns
    -------
    item : Dataset or None
        The largest 2-D region (tissue preferred over colour flow) that fits the image; None
        when there is none (the whole frame is then used).
    notes : list of str
        One line for each region left out and why.
    """
    h, w = int(frame_shape[0]), int(frame_shape[1])
    notes, fitting = [], []
    others = [r for r in regions if _code(r, "RegionSpatialFormat") != SPATIAL_2D]
    if others:
        kinds = sorted(
            {_SPATIAL_NAMES.get(_code(r, "RegionSpatialFormat"), "unknown") for r in others}
        )
        notes.append(
            f"{len(others)} ultrasound region(s) of another kind ({', '.join(kinds)}) "
            "left out; the 2-D image region is used"
        )
    for item in regions:
        if _code(item, "RegionSpatialFormat") != SPATIAL_2D:
            continue
        box = _dicom_box(item)
        if box is None or not (0 <= box[0] < box[2] < h + 1 and 0 <= box[1] < box[3] < w + 1):
            notes.append(f"ultrasound region {box} does not fit the {w}x{h} image; ignored")
            continue
        fitting.append(item)
    if not fitting:
        if regions:
            notes.append("no usable 2-D ultrasound region: the whole frame is used")
        return None, notes

    def rank(item):
        y0, x0, y1, x1 = _dicom_box(item)
        return (_code(item, "RegionDataType") == _TISSUE, (y1 - y0) * (x1 - x0))

    return max(fitting, key=rank), notes


def _dicom_box(item) -> tuple[int, int, int, int] | None:
    """``(y0, x0, y1, x1)`` half-open from a region's inclusive Region Location Min/Max."""
    try:
        x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
        x1, y1 = int(item.RegionLocationMaxX1) + 1, int(item.RegionLocationMaxY1) + 1
    except (AttributeError, TypeError, ValueError):
        return None
    return y0, x0, y1, x1


def dicom_region(item, frame_shape) -> Region:
    """A :class:`Region` from the item :func:`pick_dicom_region` chose (None: full frame)."""
    if item is None:
        return Region.full(frame_shape)
    return Region(*_dicom_box(item), source="dicom")


def sample_indices(n: int, k: int = 16) -> list[int]:
    """Up to ``k`` frame numbers spread over ``0..n-1``."""
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, min(n, k))}) if n else []


def detect_region(frames: np.ndarray) -> tuple[Region, str | None]:
    """The image region of a cine from a sample of its frames; a note when it is unclear.

    Parameters
    ----------
    frames : ndarray ``(k, H, W)`` uint8
        Grey frames sampled over the cine (at least 3 to detect anything).

    Returns
    -------
    region : Region
        Source ``motion``, or ``full`` when the whole frame changes (a cropped cine), the
        sample is too small, or the changing area is not one believable rectangle.
    note : str or None
        Why the whole frame is used although part of it is still.
    """
    import cv2

    frames = np.asarray(frames)
    full = Region.full(frames.shape[1:])
    if len(frames) < 3:
        return full, None
    spread = frames.max(axis=0).astype(np.int16) - frames.min(axis=0)
    moving = (spread >= _MOVING_RANGE).astype(np.uint8)
    if moving.mean() > 1 - _MIN_BORDER:
        return full, None
    # close the still holes inside the image (dark cavities, shadows) before taking components
    k = max(3, (min(moving.shape) // 40) | 1)
    closed = cv2.morphologyEx(moving, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    if count < 2:
        return full, "no part of the frame changes over the sampled frames: the whole frame is used"
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, area = (int(v) for v in stats[best])
    h, w = moving.shape
    if area < _MIN_AREA * h * w:
        return full, (
            "the changing part of the frame is too small to be the image: the whole frame is used"
        )
    if bw * bh > (1 - _MIN_BORDER) * h * w:
        # still dark corners (a sector image) are no concern; still marks inside are
        ink = (moving == 0) & (frames.mean(axis=0) > _INK)
        if ink.mean() < _MIN_INK:
            return full, None
        return full, (
            "the border of the frame is not still (still marks lie within the "
            "changing area): the whole frame is used"
        )
    return Region(y, x, y + bh, x + bw, "motion"), None


def region_of(frames) -> Region | None:
    """The region a frame sequence carries (a Cine's ``region``) when it is not the whole
    frame, else None."""
    region = getattr(frames, "region", None)
    if not isinstance(region, Region) or region.source == "full":
        return None
    shape = getattr(frames, "frame_shape", None)
    return None if shape is not None and region.is_full(shape) else region


def crop_frames(frames) -> tuple[object, np.ndarray]:
    """``frames`` cut to their region (a lazy view) and the ``(x, y)`` offset to add to
    coordinates found in it; ``frames`` itself and ``(0, 0)`` when there is no region."""
    region = region_of(frames)
    if region is None:
        return frames, np.zeros(2)
    return _Framed(frames, region, crop=True), np.asarray(region.offset, dtype=float)


def mask_frames(frames):
    """``frames`` with everything outside their region black (a lazy view), for exports."""
    region = region_of(frames)
    return frames if region is None else _Framed(frames, region, crop=False)


def crop_for_training(frames, table):
    """Frames cut to their region and the point table moved into it (points outside dropped).

    The model then learns from the image only; :func:`crop_frames` gives prediction the same
    view and the offset back to full-frame coordinates.
    """
    view, (x0, y0) = crop_frames(frames)
    if view is frames:
        return frames, table
    region = region_of(frames)
    inside = table["x"].between(region.x0 - 0.5, region.x1 - 0.5) & table["y"].between(
        region.y0 - 0.5, region.y1 - 0.5
    )
    moved = table[inside].copy()
    moved["x"] -= x0
    moved["y"] -= y0
    return view, moved.reset_index(drop=True)


class _Framed:
    """``len`` and ``[i]`` of a frame sequence, each frame cut to a region or masked by it."""

    def __init__(self, frames, region: Region, crop: bool):
        self._frames, self._region, self._crop = frames, region, crop

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i):
        frame = np.asarray(self._frames[i])
        if self._crop:
            return frame[self._region.slices]
        out = np.zeros_like(frame)
        out[self._region.slices] = frame[self._region.slices]
        return out
