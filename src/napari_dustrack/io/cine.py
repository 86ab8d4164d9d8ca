"""Open any ultrasound cine lazily: video, multi-frame DICOM, TIFF stack or image folder.

:func:`open_cine` picks a reader by content and file type and returns a :class:`Cine`:
``len(cine)``, ``cine[i]`` (exact frame ``i``, fast when stepping forward), ``cine.data`` (a
dask array for napari that decodes only the frames it shows), ``cine.fps`` and
``cine.pixel_spacing`` (mm) when the file has them. Frames are uint8, ``(H, W)`` grayscale or
``(H, W, 3)`` when ``rgb=True``.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np

from ..errors import DustrackError
from .pixels import check_frame_index
from .sidecar import read_view, update_view

VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv")
DICOM_SUFFIXES = (".dcm", ".dicom")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")

# frame cache: on unless NAPARI_DUSTRACK_FRAME_CACHE=0; budget in GiB
_CACHE_ENV = "NAPARI_DUSTRACK_FRAME_CACHE"
_CACHE_MAX_ENV = "NAPARI_DUSTRACK_FRAME_CACHE_MAX_GB"
_FILL_DELAY_S = 1.0  # let napari show its first frames before the cache competes for CPU


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a ``.dcm``/``.dicom`` name or a file with the ``DICM`` preamble marker."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def cine_kind(path: str | os.PathLike) -> str | None:
    """``video``, ``dicom``, ``tiff`` or ``images`` by name/content; None when unknown."""
    path = Path(path)
    if path.is_dir():
        from .stack import image_files

        return "images" if image_files(path) else None
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in IMAGE_SUFFIXES:
        return "images"
    if is_dicom(path):
        return "dicom"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def open_cine(
    path: str | os.PathLike,
    rgb: bool | str = False,
    fill_cache: bool | None = None,
    cache_max_bytes: int | None = None,
    *,
    region: bool = True,
) -> Cine:
    """Open a cine lazily; only the first frame is read.

    Parameters
    ----------
    path : str or PathLike
        A video (MP4/AVI/MOV/MKV...), a multi-frame DICOM, a TIFF stack, a PNG/JPEG image or
        a folder of PNG/JPEG frames.
    rgb : bool or "auto"
        Keep colour: frames ``(H, W, 3)``. Default grayscale ``(H, W)`` (what algorithms
        read). ``"auto"``: colour when the first frame holds colour (for display).
    fill_cache : bool, optional
        For videos, fill a grayscale frame cache on disk in the background (the sidecar
        folder ``<video>.dustrack/``) from which frames are then served. Default: on, unless
        the environment variable ``NAPARI_DUSTRACK_FRAME_CACHE=0``. Either way, the frames an
        existing full-size cache already holds are read from it (same pixels, no decoding).
    cache_max_bytes : int, optional
        Size budget of that cache (default 6 GiB, or ``NAPARI_DUSTRACK_FRAME_CACHE_MAX_GB``);
        longer cines are cached at reduced size, for display only.
    region : bool
        Find the ultrasound image region from the frames (:attr:`Cine.region`, on first use)
        when the file does not give it; False: the DICOM header's region or the whole frame.

    Raises
    ------
    DustrackError
        Missing, unreadable, empty or unsupported file (one line naming it).
    """
    path = Path(path)
    if not path.exists():
        raise DustrackError("file not found", path)
    kind = cine_kind(path)
    remember = fill_cache is not False  # a one-pass read (open_frames) writes no sidecar
    if rgb == "auto":
        rgb = read_view(path).get("colour", "auto")
    source = _open_source(path, kind, rgb != "auto" and bool(rgb), fill_cache)
    if rgb == "auto":
        source, rgb = _colour_source(source, path, kind, fill_cache)
        if remember:
            update_view(path, colour=rgb)
    cine = Cine(source, path, rgb=rgb, find_region=region, remember=remember)
    if cine.kind == "video" and not rgb:
        if _cache_wanted(fill_cache):
            cine._start_frame_cache(_cache_budget(cache_max_bytes))
        else:  # decode only what an earlier fill (napari, a previous run) has not cached
            from .framecache import open_cached_frames

            cine.frame_cache = open_cached_frames(path, len(cine), cine.frame_shape)
    return cine


def open_frames(path: str | os.PathLike, **options) -> Cine:
    """Open a cine for an algorithm that reads it once, in order: :func:`open_cine` without
    filling the frame cache (frames an existing cache holds are still read from it)."""
    return open_cine(path, fill_cache=False, **options)


def _open_source(path: Path, kind: str | None, rgb: bool, fill_cache: bool | None, index=None):
    if kind == "images":
        from .stack import ImageFolder

        source = ImageFolder(path, rgb=rgb)
    elif kind == "tiff":
        from .stack import TiffStack

        source = TiffStack(path, rgb=rgb)
    elif kind == "dicom":
        from .dicom import DicomCine

        source = DicomCine(path, rgb=rgb)
    elif path.is_dir():
        raise DustrackError("folder has no PNG/JPEG frames", path)
    else:  # any other file: let FFmpeg decide whether it is a video
        source = _open_video(path, rgb, sidecar=_cache_wanted(fill_cache), index=index)
    return source


def _colour_source(source, path: Path, kind: str | None, fill_cache: bool | None):
    """``(source, True)`` reopened in colour when the cine's first frame holds colour, else
    ``(source, False)`` as it is (a grey source)."""
    from .pixels import has_colour

    if hasattr(source, "first_frame_rgb"):  # a video: look on the file already open
        first = source.first_frame_rgb()
    else:
        colour = _open_source(path, kind, True, False)
        try:
            first = colour.read(0)
        finally:
            colour.close()
    if first is None or not has_colour(first):
        return source, False
    index = getattr(source, "index", None)
    source.close()
    return _open_source(path, kind, True, fill_cache, index=index), True


def _open_video(path: Path, rgb: bool, sidecar: bool, index=None):
    """A VideoReader; a frame index given or saved in ``<video>.dustrack/`` is reused, and
    with ``sidecar`` a new one is saved there."""
    from .framecache import load_index, save_index
    from .video import VideoIndex, VideoReader

    saved = load_index(path) if index is None else (index.pts, index.keyframes)
    index = VideoIndex(*saved) if saved is not None else None
    source = VideoReader(path, rgb=rgb, index=index)
    if sidecar and saved is None:
        save_index(path, source.index.pts, source.index.keyframes)
    return source


def _cache_wanted(fill_cache: bool | None) -> bool:
    if fill_cache is not None:
        return bool(fill_cache)
    return os.environ.get(_CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _cache_budget(cache_max_bytes: int | None) -> int:
    from .framecache import DEFAULT_MAX_BYTES

    if cache_max_bytes is not None:
        return int(cache_max_bytes)
    try:
        return int(float(os.environ[_CACHE_MAX_ENV]) * 2**30)
    except (KeyError, ValueError):
        return DEFAULT_MAX_BYTES


class Cine:
    """A lazily read cine: ``len``, ``cine[i]``, ``cine.data`` (dask), fps and spacing.

    Not built directly: use :func:`open_cine`.

    Attributes
    ----------
    path : Path
    kind : str
        ``video``, ``dicom``, ``tiff`` or ``images``.
    fps : float or None
        Frames per second, when the file says.
    pixel_spacing : (dy, dx) in mm, or None
    shape : tuple
        ``(N, H, W)`` or ``(N, H, W, 3)``.
    frame_cache : FrameCache, CachedFrames or None
        The frame cache of a video, when one is filled or read.
    region : Region
        The ultrasound image region (see :mod:`.region`); coordinates stay in the full frame.
    notes : list of str
        One-line notes about the file (e.g. ultrasound regions left out).
    """

    def __init__(
        self, source, path, rgb: bool = False, find_region: bool = True, remember: bool = False
    ):
        self._source = source
        self.path = Path(path)
        self.rgb = bool(rgb)
        self.kind = source.kind if hasattr(source, "kind") else "video"
        self.fps = source.fps
        self.pixel_spacing = getattr(source, "pixel_spacing", None)
        #: one line per thing the user should know (regions left out, odd frame sizes)
        self.notes = list(getattr(source, "notes", ()))
        self._region = getattr(source, "region", None)
        self._find_region = bool(find_region)
        self._remember = bool(remember)  # keep a detected region in the sidecar's view record
        self.shape = tuple(int(v) for v in source.shape)
        self.dtype = np.dtype(np.uint8)
        self.frame_cache = None
        #: serve jumps from a reduced-size frame cache (fast but blurrier); a widget may set
        #: this False while the user places points on a very long 1080p cine
        self.display_reduced = True
        self._data = None
        # a cine dropped without close() (its layer deleted) closes its file: no open handle
        # left behind (a ResourceWarning for a TIFF)
        self._close_source = weakref.finalize(self, source.close)

    # -- sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def __getitem__(self, key):
        """``cine[i]`` -> frame ``i``; slices and ``cine[i, y0:y1, x0:x1]`` also work."""
        return _index(key, len(self), self.frame)

    def __iter__(self):
        for i in range(len(self)):
            yield self.frame(i)

    def __array__(self, dtype=None, copy=None):
        frames = np.stack([self.frame(i) for i in range(len(self))])
        return frames if dtype is None else frames.astype(dtype)

    def frame(self, i: int) -> np.ndarray:
        """The exact frame ``i`` (for algorithms)."""
        i = check_frame_index(i, len(self))
        cached = self._source.cached(i) if hasattr(self._source, "cached") else None
        if cached is not None:
            return cached
        fc = self.frame_cache
        if fc is not None and fc.full_res and fc.has(i):
            return fc.get(i)
        return self._source.read(i)

    def display_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` for display (what ``cine.data`` serves).

        Exact when that is cheap (decoded recently, the next frame of the decoder, or in a
        full-size frame cache). A frame that would need a seek comes from a reduced frame
        cache, upsampled, when it holds it and :attr:`display_reduced` is true; else it is
        decoded, and the background fill is pointed at it.
        """
        i = check_frame_index(i, len(self))
        cached = self._source.cached(i) if hasattr(self._source, "cached") else None
        if cached is not None:
            return cached
        fc = self.frame_cache
        if fc is None:
            return self._source.read(i)
        if fc.has(i) and (fc.full_res or (self.display_reduced and not self._next_is(i))):
            return fc.get_full(i)
        if not fc.has(i):
            index = self._source.index
            fc.request(i, index.keyframe_before(i), index.keyframe_after(i))
        return self._source.read(i)

    def _next_is(self, i: int) -> bool:
        """True when the decoder reaches ``i`` by decoding at most two more frames."""
        pos = getattr(self._source, "position", None)
        return pos is not None and pos < i <= pos + 2

    @property
    def region(self):
        """The ultrasound image region (DICOM header, else found from a sample of frames)."""
        from .region import Region

        if self._region is None:
            self._region = (
                self._detect_region() if self._find_region else Region.full(self.frame_shape)
            )
        return self._region

    def _detect_region(self):
        """The region an earlier open found (the sidecar's view record), else detected."""
        from .region import Region

        region, note = self._saved_region()
        if region is None:
            region, note = self._find_region_in_frames()
            if region is None:
                return Region.full(self.frame_shape)
            if self._remember:
                update_view(self.path, region={**region.to_dict(), "note": note})
        if note:
            self.notes.append(f"{self.path}: {note}")
        return region

    def _saved_region(self):
        """``(region, note)`` from the view record, ``(None, None)`` when there is none that
        fits this cine."""
        from .region import Region

        saved = read_view(self.path).get("region")
        try:
            region = Region.from_dict(saved)
        except (TypeError, KeyError, ValueError):
            return None, None
        h, w = self.frame_shape[:2]
        if not (0 <= region.y0 < region.y1 <= h and 0 <= region.x0 < region.x1 <= w):
            return None, None
        return region, saved.get("note")

    def _find_region_in_frames(self):
        """``(region, note)`` from a sample of frames; ``(None, None)`` when a frame is damaged
        (then noted here, and not remembered)."""
        from .pixels import to_gray
        from .region import detect_region, sample_indices

        # a video is read from its start (no seeks; slow cines need the 24 frames to show
        # motion everywhere in the image); other kinds sample the whole cine. The rectangle is
        # found on a copy of about 270 rows: at 1080p every 4th pixel (within 3 px of every
        # 2nd), a quarter of the work.
        picks = range(min(len(self), 24)) if self.kind == "video" else sample_indices(len(self))
        step = max(2, min(self.frame_shape[:2]) // 270)
        try:
            sample = np.stack([to_gray(self.frame(i))[::step, ::step] for i in picks])
        except DustrackError as exc:  # a damaged frame: the whole frame, and say why
            self.notes.append(f"{exc}; the whole frame is used")
            return None, None
        region, note = detect_region(sample)
        return region.scaled(step, self.frame_shape), note

    # -- napari ------------------------------------------------------------------------------
    @property
    def data(self):
        """A dask array ``(N, H, W[, 3])`` uint8, one chunk per frame, read on demand."""
        if self._data is None:
            import dask.array as da
            from dask.base import tokenize

            try:
                stamp = self.path.stat().st_mtime_ns
            except OSError:
                stamp = 0
            name = "dustrack-cine-" + tokenize(str(self.path.resolve()), stamp, self.rgb, id(self))
            self._data = da.from_array(
                _DisplayView(self),
                chunks=(1, *self.frame_shape),
                name=name,
                asarray=False,
                fancy=False,
                lock=False,
                inline_array=True,
                meta=np.empty((0,) * self.ndim, dtype=np.uint8),
            )
        return self._data

    def metadata(self, *, region: bool = False) -> dict:
        """``{"path", "fps", "pixel_spacing", "n_frames", "kind"}`` for the layer's metadata.

        With ``region``, also ``"region"``: :attr:`region` as a dict (finding it if needed).
        """
        meta = {
            "path": str(self.path),
            "fps": self.fps,
            "pixel_spacing": None
            if self.pixel_spacing is None
            else tuple(float(v) for v in self.pixel_spacing),
            "n_frames": len(self),
            "kind": self.kind,
        }
        if region:
            meta["region"] = self.region.to_dict()
        return meta

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the frame cache and close the file."""
        if self.frame_cache is not None:
            self.frame_cache.close()
        self._close_source()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        # a worker process reopens the file; it uses no frame cache of its own and keeps the
        # region found here (no second detection)
        region = None if self._region is None else self._region.to_dict()
        return (_reopen, (str(self.path), self.rgb, region))

    def __repr__(self) -> str:
        return (
            f"Cine({str(self.path)!r}, kind={self.kind!r}, shape={self.shape}, "
            f"fps={self.fps}, pixel_spacing={self.pixel_spacing})"
        )

    def _start_frame_cache(self, max_bytes: int) -> None:
        from .framecache import FrameCache
        from .video import VideoReader

        path, index, full = self.path, self._source.index, self.frame_shape

        def make_reader(size):  # must not reference the Cine (see the finalizer below)
            reduced = tuple(size) != tuple(full)
            # a reduced cache is display-only, so it may skip the deblocking filter
            return VideoReader(
                path,
                cache_bytes=0,
                threads=2,
                index=index,
                output_size=size if reduced else None,
                fast_decode=reduced,
            )

        try:
            self.frame_cache = FrameCache(
                self.path,
                len(self),
                self.frame_shape,
                make_reader,
                max_bytes=max_bytes,
                start_delay=_FILL_DELAY_S,
            )
        except OSError:  # read-only folder, full disk...: go without the cache
            self.frame_cache = None
            return
        # a cine dropped without close() (layer deleted) stops its fill thread
        weakref.finalize(self, self.frame_cache.stop)


def _reopen(path: str, rgb: bool, region: dict | None = None) -> Cine:
    from .region import Region

    cine = open_frames(path, rgb=rgb)
    if region is not None:
        cine._region = Region.from_dict(region)
    return cine


class _DisplayView:
    """The array-like that dask slices: integer-frame chunks read through the display path."""

    def __init__(self, cine: Cine):
        self._cine = cine
        self.shape = cine.shape
        self.dtype = cine.dtype
        self.ndim = cine.ndim

    def __getitem__(self, key):
        return _index(key, self.shape[0], self._cine.display_frame)

    def __reduce__(self):
        return (_DisplayView, (self._cine,))


def _index(key, n: int, get):
    """numpy-style indexing over frames, reading only the frames ``key`` selects."""
    rest = ()
    if isinstance(key, tuple):
        key, rest = (key[0], key[1:]) if key else (slice(None), ())
    if isinstance(key, (int, np.integer)):
        frame = get(int(key))
        return frame[rest] if rest else frame
    if isinstance(key, slice):
        frames = [get(i) for i in range(*key.indices(n))]
    else:
        frames = [get(int(i)) for i in np.asarray(key).ravel()]
    if not frames:
        shape = get(0).shape
        stack = np.empty((0, *shape), dtype=np.uint8)
    else:
        stack = np.stack(frames)
    return stack[(slice(None), *rest)] if rest else stack
