"""TIFF stacks (tifffile, memory-mapped when possible) and folders of PNG/JPEG frames.

A TIFF's first series gives the frames: every axis before the image plane (and the colour
samples, if any) is flattened into the frame axis. Uncompressed contiguous data is
memory-mapped; otherwise one page is decoded per frame. ImageJ metadata supplies the frame
rate (``finterval`` s or ``fps``) and spacing (``unit`` mm/cm/um with the X/Y resolution).

A folder's frames are its ``.png/.jpg/.jpeg/.bmp`` files (and ``.tif`` pages if it holds no
others) in natural order (``img2`` before ``img10``); a frame of another size than the first is
cut or zero-padded to it, with a note naming the file. Data wider than 8 bits is scaled to
uint8 with one range from a few sampled frames.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import DustrackError
from .pixels import Scaler, fit_frame, to_gray, to_rgb

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_UNIT_MM = {
    "mm": 1.0,
    "millimeter": 1.0,
    "cm": 10.0,
    "centimeter": 10.0,
    "um": 1e-3,
    "micron": 1e-3,
    "\\u00B5m": 1e-3,
    "µm": 1e-3,
    "m": 1000.0,
    "meter": 1000.0,
}


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``img2`` < ``img10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_files(folder) -> list[Path]:
    """Image frames in ``folder``, naturally sorted (PNG/JPEG/BMP, else TIFF files)."""
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    except OSError:
        return []
    for suffixes in (FRAME_SUFFIXES, (".tif", ".tiff")):
        files = [p for p in entries if p.suffix.lower() in suffixes]
        if files:
            return sorted(files, key=lambda p: natural_key(p.name))
    return []


def _sample_indices(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1})


class TiffStack:
    """Lazy frames of a TIFF file's first series.

    Raises
    ------
    DustrackError
        Not a readable TIFF, or no image in it.
    """

    kind = "tiff"

    def __init__(self, path, rgb: bool = False):
        import tifffile

        self.path = Path(path)
        self.rgb = bool(rgb)
        self._lock = threading.Lock()
        try:
            self._tif = tifffile.TiffFile(str(self.path))
            series = self._tif.series[0]
        except (tifffile.TiffFileError, OSError, ValueError, IndexError, struct_error()) as exc:
            raise DustrackError(f"not a readable TIFF ({_short(exc)})", self.path) from None
        shape, axes = tuple(series.shape), series.axes
        self._colour = axes.endswith("S") and shape[-1] in (3, 4)
        plane = 3 if self._colour else 2
        if len(shape) < plane or 0 in shape:
            self._tif.close()
            raise DustrackError("TIFF holds no image", self.path)
        self._frame_raw = shape[-plane:]
        self._n = int(np.prod(shape[:-plane], dtype=np.int64)) if len(shape) > plane else 1
        self._mm = self._try_memmap(series)
        self._pages = None if self._mm is not None else self._page_list(series)
        self.fps, self.pixel_spacing = self._imagej_units()
        samples = [self._raw(i) for i in _sample_indices(self._n)]
        self._scale = Scaler(samples[0].dtype, samples)
        self.shape = (self._n, *self.read(0).shape)

    def __len__(self) -> int:
        return self._n

    def read(self, i: int) -> np.ndarray:
        frame = self._scale(self._raw(i))
        return to_rgb(frame) if self.rgb else to_gray(frame)

    def close(self) -> None:
        with self._lock:
            self._mm = None
            self._tif.close()

    def _try_memmap(self, series):
        import tifffile

        try:
            mm = tifffile.memmap(str(self.path), series=0, mode="r")
        except (ValueError, OSError, tifffile.TiffFileError):
            return None  # compressed or scattered strips: read page by page
        return mm.reshape(self._n, *self._frame_raw)

    def _page_list(self, series):
        pages = list(series.pages)
        if len(pages) != self._n:  # e.g. one page holding several planes: read it all once
            try:
                data = series.asarray()
            except Exception as exc:  # truncated or damaged: codec errors come in many types
                raise DustrackError(f"damaged TIFF ({_short(exc)})", self.path) from None
            self._mm = data.reshape(self._n, *self._frame_raw)
            return None
        return pages

    def _raw(self, i: int) -> np.ndarray:
        with self._lock:
            if self._mm is not None:
                return np.array(self._mm[i])
            try:
                return self._pages[i].asarray().reshape(self._frame_raw)
            except Exception as exc:  # codec errors come in many types
                raise DustrackError(
                    f"frame {i} could not be decoded ({_short(exc)})", self.path
                ) from None

    def _imagej_units(self):
        meta = self._tif.imagej_metadata or {}
        fps = None
        try:
            if meta.get("finterval"):
                fps = 1.0 / float(meta["finterval"])
            elif meta.get("fps"):
                fps = float(meta["fps"])
        except (TypeError, ValueError, ZeroDivisionError):
            fps = None
        to_mm = _UNIT_MM.get(str(meta.get("unit", "")).strip().lower())
        spacing = None
        if to_mm is not None:
            tags = self._tif.pages[0].tags
            try:
                xr, yr = (tags[name].value for name in ("XResolution", "YResolution"))
                dx, dy = xr[1] / xr[0] * to_mm, yr[1] / yr[0] * to_mm
                spacing = (float(dy), float(dx)) if dx > 0 and dy > 0 else None
            except (KeyError, ZeroDivisionError, TypeError, IndexError):
                spacing = None
        return fps, spacing


class ImageFolder:
    """Lazy frames from a folder of image files (or a single image file).

    Raises
    ------
    DustrackError
        No image files, or the first one unreadable; a later unreadable frame raises when it
        is read, naming that file (a differently sized one is fitted, with a note).
    """

    kind = "images"

    def __init__(self, path, rgb: bool = False):
        self.path = Path(path)
        self.rgb = bool(rgb)
        self.files = image_files(self.path) if self.path.is_dir() else [self.path]
        if not self.files:
            raise DustrackError("folder has no PNG/JPEG frames", self.path)
        self.fps = None
        self.pixel_spacing = None
        first = self._load(0)
        self._raw_shape = first.shape
        self.notes: list[str] = []
        self._misfits: set[int] = set()
        samples = [first]
        for i in _sample_indices(len(self.files))[1:]:  # a size mismatch is told at once
            try:
                samples.append(self._load(i))
            except DustrackError:
                continue  # a broken frame is reported when it is read
            self._check_size(i, samples[-1])
        self._scale = Scaler(first.dtype, samples)
        self.shape = (len(self.files), *self.read(0).shape)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, i: int) -> np.ndarray:
        frame = self._load(i)
        if frame.shape[:2] != self._raw_shape[:2]:
            self._check_size(i, frame)
            frame = fit_frame(frame, self._raw_shape)
        frame = self._scale(frame)
        return to_rgb(frame) if self.rgb else to_gray(frame)

    def close(self) -> None:
        pass

    def _check_size(self, i: int, frame: np.ndarray) -> None:
        """Note (once per file, also in the log) a frame whose size is not the first one's."""
        if frame.shape[:2] == self._raw_shape[:2] or i in self._misfits:
            return
        self._misfits.add(i)
        (h, w), (h0, w0) = frame.shape[:2], self._raw_shape[:2]
        note = (
            f"{self.files[i]}: frame size {w}x{h} differs from the first frame's {w0}x{h0}; "
            "it is shown cut or padded to that size (the file is not changed)"
        )
        self.notes.append(note)
        logging.getLogger(__name__).warning(note)

    def _load(self, i: int) -> np.ndarray:
        import cv2

        file = self.files[i]
        if file.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            try:
                return tifffile.imread(str(file))
            except Exception as exc:
                raise DustrackError(f"unreadable image ({_short(exc)})", file) from None
        try:
            buffer = np.fromfile(file, dtype=np.uint8)  # handles non-ASCII paths, unlike imread
        except OSError as exc:
            raise DustrackError(f"unreadable image ({_short(exc)})", file) from None
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
        if image is None:
            raise DustrackError("not a readable image", file)
        if image.ndim == 3 and image.shape[2] >= 3:  # OpenCV gives BGR(A)
            image = cv2.cvtColor(
                image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
            )
        return image


def struct_error():
    import struct

    return struct.error


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:150]
