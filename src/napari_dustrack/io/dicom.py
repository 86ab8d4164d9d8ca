"""Multi-frame DICOM cines (ultrasound and others) through pydicom, read frame by frame.

- Frame rate: Cine Rate (0018,0040), else 1000 / Frame Time (0018,1063) ms, else
  Recommended Display Frame Rate (0008,2144), else the mean of Frame Time Vector (0018,1065).
- Image region: the 2-D tissue region of the Sequence of Ultrasound Regions (0018,6011)
  (see :mod:`.region`; other kinds are left out with a note).
- Pixel spacing (mm): that region, else the first region
  whose physical units are cm in x and y (Physical Delta X/Y (0018,602C/602E) x 10), else
  Pixel Spacing (0028,0030) (row spacing dy, column spacing dx, already mm).
- Uncompressed pixel data is memory-mapped: a frame costs one read. Compressed transfer
  syntaxes are decoded per frame when pydicom has a decoder for them installed, and refused
  with the packages to install otherwise.
- Frames become uint8: MONOCHROME1 is inverted, data wider than 8 bits is scaled with one
  range from a few sampled frames, colour (RGB/YBR) becomes luma unless ``rgb=True``.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import DustrackError
from .pixels import Scaler, to_gray, to_rgb
from .region import dicom_region, pick_dicom_region

_US_UNITS_CM = 3  # Physical Units X/Y Direction: 3 = cm


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        # pixel data stays on disk: it is read later, a frame at a time
        return pydicom.dcmread(str(path), defer_size="64 KB")
    except InvalidDicomError:
        raise DustrackError("not a DICOM file", path) from None
    except (OSError, ValueError, EOFError, KeyError, TypeError, AttributeError) as exc:
        problem = " ".join(str(exc).split())[:150]
        raise DustrackError(f"unreadable DICOM ({problem})", path) from None


def frame_rate(ds) -> float | None:
    """Frames per second from the DICOM timing attributes, or None."""
    for keyword, to_fps in (
        ("CineRate", float),
        ("FrameTime", lambda ms: 1000.0 / float(ms)),
        ("RecommendedDisplayFrameRate", float),
    ):
        value = ds.get(keyword)
        try:
            fps = to_fps(value) if value not in (None, "") else None
        except (TypeError, ValueError, ZeroDivisionError):
            fps = None
        if fps is not None and 0 < fps < 1e5:
            return fps
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        times = np.asarray(list(vector), dtype=float)[1:]  # the first entry is 0 by definition
        times = times[times > 0]
        if times.size:
            return 1000.0 / float(times.mean())
    return None


def pixel_spacing(ds, region=None) -> tuple[float, float] | None:
    """``(dy, dx)`` in mm from the ultrasound regions or Pixel Spacing, or None.

    ``region`` (the item :func:`~napari_dustrack.io.region.pick_dicom_region` chose) is asked
    first; then the first region in cm, then Pixel Spacing.
    """
    regions = list(ds.get("SequenceOfUltrasoundRegions", []) or [])
    for item in ([region] if region is not None else []) + regions:
        try:
            units = (int(item.PhysicalUnitsXDirection), int(item.PhysicalUnitsYDirection))
            dx, dy = abs(float(item.PhysicalDeltaX)), abs(float(item.PhysicalDeltaY))
        except (AttributeError, TypeError, ValueError):
            continue
        if units == (_US_UNITS_CM, _US_UNITS_CM) and dx > 0 and dy > 0:
            return dy * 10.0, dx * 10.0
    spacing = ds.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        try:
            dy, dx = float(spacing[0]), float(spacing[1])
        except (TypeError, ValueError):
            return None
        if dy > 0 and dx > 0:
            return dy, dx
    return None


class DicomCine:
    """Lazy frame access to a (multi-frame) DICOM file.

    Parameters
    ----------
    path : str or PathLike
    rgb : bool
        Frames ``(H, W, 3)`` instead of grayscale.

    Raises
    ------
    DustrackError
        Not DICOM, no pixel data, zero frames, or a compression no installed decoder reads.
    """

    kind = "dicom"

    def __init__(self, path, rgb: bool = False):
        self.path = Path(path)
        self.rgb = bool(rgb)
        self._lock = threading.Lock()
        ds = _read_header(self.path)
        if "PixelData" not in ds:
            raise DustrackError("DICOM file has no image data", self.path)
        try:
            n = int(ds.get("NumberOfFrames", 1) or 1)
            rows, cols = int(ds.Rows), int(ds.Columns)
            self._samples = int(ds.get("SamplesPerPixel", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            raise DustrackError(
                "DICOM image attributes (Rows/Columns/Number of Frames) are missing or invalid",
                self.path,
            ) from None
        if n < 1 or rows < 1 or cols < 1:
            raise DustrackError("DICOM file has no frames", self.path)
        self._photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        self.fps = frame_rate(ds)
        item, notes = pick_dicom_region(
            list(ds.get("SequenceOfUltrasoundRegions", []) or []), (rows, cols)
        )
        self.notes = [f"{self.path}: {note}" for note in notes]
        # None: no region in the header, so the cine's region is found from its frames; a
        # header whose regions are all unusable means the full frame (no guessing)
        self.region = dicom_region(item, (rows, cols)) if item is not None or notes else None
        self.pixel_spacing = pixel_spacing(ds, item)
        self._n = n
        self._ds = ds
        self._mm = None
        tsyntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if tsyntax is not None and tsyntax.is_compressed:
            self._prepare_compressed(tsyntax)
        else:
            self._prepare_native(rows, cols)
        samples = [self._invert(self._raw(i)) for i in sorted({0, n // 2, n - 1})]
        self._scale = Scaler(samples[0].dtype, samples)
        first = self._convert(self._raw(0))
        self.shape = (n, *first.shape)

    # -- frame access ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` as uint8 (grayscale, or RGB when asked)."""
        return self._convert(self._raw(i))

    def close(self) -> None:
        self._mm = None
        self._ds = None

    def _invert(self, frame: np.ndarray) -> np.ndarray:
        if self._photometric != "MONOCHROME1":
            return frame
        return -frame if frame.dtype.kind in "fi" else np.invert(frame)

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        frame = self._scale(self._invert(frame))
        return to_rgb(frame) if self.rgb else to_gray(frame)

    def _raw(self, i: int) -> np.ndarray:
        with self._lock:
            if self._ds is None:
                raise DustrackError("DICOM file is closed", self.path)
            if self._mm is not None:
                return np.array(self._mm[i])
            return self._decode(i)

    # -- uncompressed ------------------------------------------------------------------------
    def _prepare_native(self, rows: int, cols: int) -> None:
        ds = self._ds
        bits = int(ds.get("BitsAllocated", 8))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        if bits not in (8, 16, 32) or self._photometric not in (
            "MONOCHROME1",
            "MONOCHROME2",
            "RGB",
            "YBR_FULL",
        ):
            self._mm = None  # unusual layout: let pydicom unpack it frame by frame
            self._decoder = None
            return
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
        tsyntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        little = tsyntax is None or tsyntax.is_little_endian
        dtype = dtype.newbyteorder("<" if little else ">")
        element = ds.get_item("PixelData", keep_deferred=True)
        offset = getattr(element, "value_tell", None) if element.value is None else None
        if offset is None:  # pixel data already in memory (small file): view it
            buffer = np.frombuffer(ds.PixelData, dtype=dtype)
        else:
            buffer = np.memmap(self.path, dtype=dtype, mode="r", offset=offset)
        planar = int(ds.get("PlanarConfiguration", 0) or 0)
        per_frame = rows * cols * self._samples
        if buffer.size < per_frame * self._n:
            raise DustrackError(
                f"truncated DICOM: pixel data holds {buffer.size // per_frame} of {self._n} frames",
                self.path,
            )
        buffer = buffer[: per_frame * self._n]
        if self._samples == 1:
            self._mm = buffer.reshape(self._n, rows, cols)
        elif planar == 1:
            self._mm = _PlanarView(buffer.reshape(self._n, self._samples, rows, cols))
        else:
            self._mm = buffer.reshape(self._n, rows, cols, self._samples)
        if self._photometric == "YBR_FULL":
            self._mm = _YbrView(self._mm)

    # -- compressed --------------------------------------------------------------------------
    def _prepare_compressed(self, tsyntax) -> None:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            needs = "; ".join(getattr(decoder, "missing_dependencies", []) or [])
            hint = f" (install one of: {needs})" if needs else ""
            raise DustrackError(
                f"pixel data is compressed as {tsyntax.name}, which no "
                f"installed decoder reads{hint}",
                self.path,
            )
        self._decoder = decoder
        self._ds.PixelData  # noqa: B018 - load the compressed frames once (small)

    def _decode(self, i: int) -> np.ndarray:
        from pydicom.pixels import pixel_array

        try:
            return pixel_array(self._ds, index=i)
        except Exception as exc:  # pydicom raises many types for bad streams
            raise DustrackError(
                f"frame {i} could not be decoded ({' '.join(str(exc).split())[:150]})", self.path
            ) from None


class _PlanarView:
    """Frames stored colour-plane by colour-plane, read as ``(H, W, S)``."""

    def __init__(self, arr):
        self._arr = arr

    def __getitem__(self, i):
        return np.moveaxis(np.asarray(self._arr[i]), 0, -1)


class _YbrView:
    """Uncompressed YBR_FULL frames, converted to RGB on read."""

    def __init__(self, arr):
        self._arr = arr

    def __getitem__(self, i):
        from pydicom.pixels import convert_color_space

        return convert_color_space(np.asarray(self._arr[i]), "YBR_FULL", "RGB")
