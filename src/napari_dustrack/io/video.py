"""Frame-accurate random access into video containers (MP4/AVI/MOV/MKV) through PyAV.

Frame ``i`` is the frame whose presentation timestamp is the ``i``-th smallest of the
stream: the pts of every packet are read once at open by demuxing (no decoding), which also
gives the keyframes and an exact frame count. Reading frame ``i`` seeks to the keyframe at or
before it and decodes forward; stepping to the next frame just decodes one more. A small LRU
cache keeps recently decoded frames (including those decoded on the way to a target) so that
stepping back and forth near a position is free.

Some files store only decode-order timestamps although their frames are reordered (H.264
with B-frames in AVI: the container has no presentation time). A decoded frame then carries
the stamp of another frame, so such a stream is numbered by the order the decoder outputs
frames: the first frame after a seek is the keyframe landed on, each next one is one more.
That count is checked against the stamps (a frame must fall in the keyframe interval its stamp
belongs to; a keyframe must be itself), and a stream with open GOPs, which the count cannot
number after a seek, is refused at open.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from ..errors import DustrackError
from .pixels import check_frame_index

# 8-bit formats whose first plane is luma; limited-range luma is stretched to 0..255
# by a table, which gives exactly what swscale's gray conversion gives but ~5x faster.
_LUMA_FORMATS = {"yuv420p", "yuv422p", "yuv444p", "yuv440p", "yuv411p", "nv12", "nv21"}
_FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p", "yuvj411p", "gray"}
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)
_AV_ERRORS = (av.FFmpegError, OSError, ValueError)
# packets looked at to tell whether the stamps follow decode order (MP4 with B-frames shows
# a stamp going back within its first 2-3 packets)
_PREFIX_PACKETS = 64
_UNNUMBERABLE = (
    "frames cannot be numbered reliably: the file stores no presentation times for its "
    "B-frames (e.g. H.264 in AVI) and its keyframes start open GOPs (or its data is "
    "damaged); re-encode it, "
    "e.g. ffmpeg -i IN -c:v libx264 -crf 18 OUT.mp4"
)


def frame_to_array(
    frame: av.VideoFrame, rgb: bool = False, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Convert a decoded frame to ``(H, W)`` uint8 grayscale, or ``(H, W, 3)`` RGB.

    With ``size=(h, w)`` the frame is also shrunk (area average) to that size; luma is then
    shrunk before its range is stretched, which saves a full-size pass.
    """
    if rgb:
        return _resize(frame.to_ndarray(format="rgb24"), size)
    name = frame.format.name
    full = name in _FULL_RANGE_FORMATS or (name in _LUMA_FORMATS and frame.color_range == 2)
    if name in _LUMA_FORMATS | _FULL_RANGE_FORMATS and (full or frame.color_range in (0, 1)):
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)
        luma = luma[: frame.height, : frame.width]
        if size is not None:
            luma = _resize(luma, size)
        elif full:
            return luma.copy()
        return luma if full else _stretch(luma)
    return _resize(frame.to_ndarray(format="gray"), size)


def _stretch(luma: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.LUT(luma, _LIMITED_TO_FULL)  # ~5x faster than numpy's fancy indexing


def _resize(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Area-average shrink; exact integer factors (cropping a remainder) take OpenCV's
    fast path, ~10-40x faster than a fractional one."""
    if size is None or tuple(size) == image.shape[:2]:
        return image
    import cv2

    h, w = int(size[0]), int(size[1])
    ky, kx = image.shape[0] // h, image.shape[1] // w
    if ky == kx and ky >= 1:
        image = image[: h * ky, : w * kx]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def _open_container(path: Path):
    if not path.exists():
        raise DustrackError("file not found", path)
    if path.is_dir():
        raise DustrackError("is a folder, not a video file", path)
    if path.stat().st_size == 0:
        raise DustrackError("file is empty", path)
    try:
        container = av.open(str(path), mode="r")
    except _AV_ERRORS as exc:
        raise DustrackError(f"not a readable video ({_short(exc)})", path) from None
    if not container.streams.video:
        others = len(container.streams)
        container.close()
        # FFmpeg lists no stream at all for a container whose video track holds no frames
        raise DustrackError("contains no video stream" if others else "video has no frames", path)
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec FFmpeg has no decoder for, or a damaged header
        container.close()
        raise DustrackError(
            "video codec unknown to FFmpeg (damaged header?); re-encode it to H.264 MP4", path
        )
    return container


def _short(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return " ".join(str(text).split())[:160]


class VideoIndex:
    """Presentation timestamps of every frame, sorted, and which frames are keyframes.

    Attributes
    ----------
    pts : np.ndarray
        ``pts[i]`` is the timestamp of frame ``i`` (stream time base), ascending. In a file
        that stores decode-order stamps only, the stamp of the ``i``-th packet.
    keyframes : np.ndarray
        Sorted frame indices of the keyframes (always starts at 0).
    stamps_ascend : bool or None
        Whether the stamps of the first packets ascend in decode order (None: not known, as
        for an index read back from the sidecar; the reader then looks).
    """

    def __init__(self, pts: np.ndarray, keyframes: np.ndarray, stamps_ascend: bool | None = None):
        self.pts = pts
        self.keyframes = keyframes
        self.stamps_ascend = stamps_ascend
        self._lookup = {int(p): i for i, p in enumerate(pts)}

    def __len__(self) -> int:
        return len(self.pts)

    def index_of(self, pts: int | None) -> int | None:
        """Frame index of a decoded frame's pts, or None when it is not in the index."""
        return None if pts is None else self._lookup.get(int(pts))

    def keyframe_before(self, i: int) -> int:
        """The last keyframe at or before frame ``i``."""
        return int(self.keyframes[np.searchsorted(self.keyframes, i, side="right") - 1])

    def keyframe_after(self, i: int) -> int:
        """The first keyframe strictly after frame ``i`` (``len(self)`` if none)."""
        j = np.searchsorted(self.keyframes, i, side="right")
        return int(self.keyframes[j]) if j < len(self.keyframes) else len(self)


def build_index(container, path: Path) -> VideoIndex:
    """Demux every packet of the first video stream (no decoding) into a :class:`VideoIndex`."""
    stream = container.streams.video[0]
    pts, keys, untimed = [], [], 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            untimed += stamp is None
            pts.append(len(pts) if stamp is None else stamp)
            keys.append(packet.is_keyframe)
    except _AV_ERRORS as exc:
        raise DustrackError(f"truncated or corrupt video ({_short(exc)})", path) from None
    if not pts:
        raise DustrackError("video has no frames", path)
    if untimed:  # frames could not be matched to positions: refuse rather than misnumber
        raise DustrackError(
            "video packets carry no timestamps (a raw elementary stream?); "
            "remux it into MP4 or MKV, e.g. ffmpeg -i IN -c copy OUT.mp4",
            path,
        )
    pts_arr = np.asarray(pts, dtype=np.int64)
    order_idx = np.argsort(pts_arr, kind="stable")
    sorted_pts = pts_arr[order_idx]
    if np.any(np.diff(sorted_pts) == 0):
        raise DustrackError("corrupt video: several frames share one timestamp", path)
    declared = stream.frames and stream.frames // _ticks_per_frame(stream, sorted_pts)
    if declared and len(pts) < declared:
        raise DustrackError(
            f"truncated or corrupt video: header declares {declared} frames, "
            f"only {len(pts)} are present",
            path,
        )
    rank = np.empty(len(pts_arr), dtype=np.int64)
    rank[order_idx] = np.arange(len(pts_arr))
    keyframes = np.unique(np.concatenate([[0], rank[np.asarray(keys, dtype=bool)]]))
    return VideoIndex(sorted_pts, keyframes, stamps_ascend=_stamps_ascend(pts))


def _stamps_ascend(stamps) -> bool:
    """Whether the first packets' stamps (decode order) strictly ascend."""
    last = None
    for n, stamp in enumerate(stamps):
        if n >= _PREFIX_PACKETS:
            break
        if stamp is None or (last is not None and stamp <= last):
            return False
        last = stamp
    return True


class VideoReader:
    """Random access to the frames of a video file; thread-safe.

    Parameters
    ----------
    path : str or PathLike
        The video file.
    rgb : bool
        Return ``(H, W, 3)`` RGB frames instead of ``(H, W)`` grayscale.
    cache_bytes : int
        Budget of the LRU cache of decoded frames (0 disables it). Frames passed on the way
        to a target are kept still decoded (YUV) and converted only if asked for, so a
        jump costs decoding alone; the budget counts each entry as two output frames.
    threads : int
        Decoder threads (frame/slice threading). With 2, the decoder works on the next
        frame while the caller looks at this one, and a jump decodes its run of frames
        faster; 1 uses the least CPU.
    index : VideoIndex, optional
        Reuse an index built by another reader of the same file (skips the demux pass).
    output_size : (h, w), optional
        Shrink frames to this size (for a reduced display cache).
    fast_decode : bool
        Skip H.264's in-loop deblocking filter: ~25% less CPU, slightly blockier frames.
        Only for display-only uses (the reduced frame cache), never for tracking.

    Raises
    ------
    DustrackError
        The file is missing, not a video, has no frames, or is truncated/corrupt.
    """

    kind = "video"
    pixel_spacing = None  # containers carry no physical scale

    def __init__(
        self,
        path,
        rgb: bool = False,
        cache_bytes: int = 128 * 2**20,
        threads: int = 2,
        index: VideoIndex | None = None,
        output_size: tuple[int, int] | None = None,
        fast_decode: bool = False,
    ):
        self.path = Path(path)
        self.rgb = bool(rgb)
        self._threads = int(threads)
        self._cache_bytes = int(cache_bytes)
        self._size = None if output_size is None else (int(output_size[0]), int(output_size[1]))
        self._fast_decode = bool(fast_decode)
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray | av.VideoFrame] = OrderedDict()
        self._cache_limit = 0  # set once the frame size is known
        self._container = _open_container(self.path)
        try:
            self.index = index if index is not None else build_index(self._container, self.path)
            self._stream = self._container.streams.video[0]
            self._configure_decoder()
            self._by_output = self._numbered_by_output()
            self.fps = _frame_rate(self._stream, self.index.pts)
            first = self._decode_first()
            self.frame_shape = first.shape
            self.shape = (len(self.index),) + first.shape
            self.dtype = np.dtype(np.uint8)
            self._cache_limit = max(0, self._cache_bytes // max(2 * first.nbytes, 1))
            self._put(0, first)
            if self._by_output:
                self._check_second_keyframe()
        except BaseException:
            self._container.close()
            raise

    # -- public API ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.read(i)

    @property
    def position(self) -> int | None:
        """Index of the last frame the decoder produced (the next one is cheap)."""
        return self._pos

    def cached(self, i: int) -> np.ndarray | None:
        """Frame ``i`` if it is in the LRU cache, else None (never decodes)."""
        with self._lock:
            frame = self._cache.get(i)
            if frame is None:
                return None
            if not isinstance(frame, np.ndarray):
                frame = self._cache[i] = _frozen(frame_to_array(frame, self.rgb, self._size))
            self._cache.move_to_end(i)
            return frame

    def read(self, i: int) -> np.ndarray:
        """Decode frame ``i`` (0-based; negative counts from the end)."""
        i = check_frame_index(i, len(self.index))
        with self._lock:
            frame = self.cached(i)
            if frame is not None:
                return frame
            if self._container is None:
                raise DustrackError("video is closed", self.path)
            if not self._can_step_to(i):
                self._seek(self.index.keyframe_before(i))
            frame = self._decode_until(i)
            if frame is None:  # decoder skipped it (damaged stream): retry from one GOP earlier
                key = self.index.keyframe_before(max(self.index.keyframe_before(i) - 1, 0))
                self._seek(key)
                frame = self._decode_until(i)
            if frame is None:
                raise DustrackError(f"frame {i} could not be decoded (corrupt data?)", self.path)
            return frame

    def first_frame_rgb(self) -> np.ndarray | None:
        """Frame 0 in colour whatever ``rgb`` is (a colour check on the open file, without a
        second open); None when it does not decode."""
        with self._lock:
            try:
                self._seek(0)
                for frame in self._frames:
                    if self.index.index_of(frame.pts) == 0:
                        self._pos = 0
                        return frame.to_ndarray(format="rgb24")
            except (*_AV_ERRORS, DustrackError):
                pass
            self._frames, self._pos = None, None
            return None

    def iter_frames(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` from ``start`` to ``stop`` (exclusive) in order."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(start, stop):
            yield i, self.read(i)

    def close(self) -> None:
        """Close the file; later reads raise."""
        with self._lock:
            if self._container is not None:
                self._container.close()
                self._container = None
                self._frames = None
            self._cache.clear()

    # pickling reopens the file by path (dask may ship the reader to worker processes)
    def __getstate__(self):
        return {
            "path": self.path,
            "rgb": self.rgb,
            "cache_bytes": self._cache_bytes,
            "threads": self._threads,
            "output_size": self._size,
            "fast_decode": self._fast_decode,
        }

    def __setstate__(self, state):
        self.__init__(**state)

    # -- internals ---------------------------------------------------------------------------
    def _configure_decoder(self) -> None:
        ctx = self._stream.codec_context
        if self._threads > 1:
            ctx.thread_type = "AUTO"
            ctx.thread_count = self._threads
        else:
            ctx.thread_count = 1
        if self._fast_decode:
            ctx.options = {"skip_loop_filter": "all"}

    def _numbered_by_output(self) -> bool:
        """Whether frames are numbered by output order: the decoder reorders frames, yet
        the packets' stamps ascend in decode order (see the module docstring)."""
        if not self._stream.codec_context.has_b_frames:
            return False
        if self.index.stamps_ascend is None:  # an index read back: look at the first packets
            try:
                stamps = (
                    p.pts if p.pts is not None else p.dts
                    for p in self._container.demux(self._stream)
                    if p.size
                )
                self.index.stamps_ascend = _stamps_ascend(stamps)
            except _AV_ERRORS as exc:
                raise DustrackError(f"corrupt video ({_short(exc)})", self.path) from None
        return bool(self.index.stamps_ascend)

    def _check_second_keyframe(self) -> None:
        """Decode on from frame 0 until the second keyframe comes out. Its count must equal
        its stamp's rank: an open GOP (frames shown before a keyframe but stored after it)
        shifts it, and is refused here rather than misnumbered after a later seek."""
        if len(self.index.keyframes) < 2:
            return
        second = int(self.index.keyframes[1])
        while True:
            frame, idx = self._next_frame(second)
            if frame is None:
                return
            if second - idx <= self._cache_limit:
                self._put(idx, frame)
            if self.index.index_of(frame.pts) == second:
                return

    def _decode_first(self) -> np.ndarray:
        self._seek(0)
        frame = self._decode_until(0)
        if frame is None:
            raise DustrackError(
                "truncated or corrupt video: the first frame cannot be decoded", self.path
            )
        return frame

    def _can_step_to(self, i: int) -> bool:
        # decoding forward is cheaper than seeking unless a keyframe lies in between
        pos = self._pos
        return (
            self._frames is not None
            and pos is not None
            and pos < i
            and self.index.keyframe_before(i) <= pos + 1
        )

    def _seek(self, key: int) -> None:
        try:
            self._container.seek(
                int(self.index.pts[key]), stream=self._stream, backward=True, any_frame=False
            )
        except _AV_ERRORS as exc:
            raise DustrackError(f"cannot seek to frame {key} ({_short(exc)})", self.path) from None
        self._frames = self._container.decode(self._stream)
        self._pos = None
        self._decoded_since_seek = 0

    def _next_frame(self, target: int) -> tuple[av.VideoFrame | None, int | None]:
        """The next decoded frame that has an index, and that index ((None, None) at the
        end); frames outside the index (e.g. pts of a dropped edit) are skipped."""
        while True:
            try:
                frame = next(self._frames)
            except StopIteration:
                self._frames, self._pos = None, None
                return None, None
            except _AV_ERRORS as exc:
                self._frames, self._pos = None, None
                raise DustrackError(
                    f"frame {target}: corrupt video data ({_short(exc)})", self.path
                ) from None
            idx = self._number(frame)
            if idx is not None:
                self._pos = idx
                return frame, idx

    def _number(self, frame: av.VideoFrame) -> int | None:
        """Index of a decoded frame: its stamp's rank, or the output count (module docstring)."""
        rank = self.index.index_of(frame.pts)
        if not self._by_output:
            return rank
        key = self.index.keyframe_before
        idx = rank if self._pos is None else self._pos + 1
        wrong = idx is None or (self._pos is None and key(idx) != idx)
        if rank is not None and not wrong:
            wrong = key(rank) != key(idx) or (key(rank) == rank and idx != rank)
        if wrong:
            self._frames, self._pos = None, None
            raise DustrackError(_UNNUMBERABLE, self.path)
        return idx

    def _decode_until(self, target: int) -> np.ndarray | None:
        """Decode forward to ``target``; frames passed on the way go to the LRU cache."""
        while True:
            frame, idx = self._next_frame(target)
            if frame is None:
                return None
            if idx > target:
                return None
            if idx == target:
                array = frame_to_array(frame, self.rgb, self._size)
                self._put(idx, array)
                return array
            if target - idx <= self._cache_limit:
                self._put(idx, frame)  # converted only if it is ever asked for

    _frames = None
    _pos = None
    _by_output = False

    def _put(self, i: int, array) -> None:
        if self._cache_limit <= 0:
            return
        self._cache[i] = _frozen(array) if isinstance(array, np.ndarray) else array
        self._cache.move_to_end(i)
        while len(self._cache) > self._cache_limit:
            self._cache.popitem(last=False)


def _frozen(array: np.ndarray) -> np.ndarray:
    """Cached frames are shared with callers: make in-place edits fail instead of corrupting."""
    array.flags.writeable = False
    return array


def _ticks_per_frame(stream, pts: np.ndarray) -> int:
    """Time-base ticks per frame where the header counts ticks as frames, else 1.

    An AVI written by ``ffmpeg -c copy`` from an MP4 with B-frames has a time base of half
    a frame: its length and average rate count ticks (600 "frames" at 60/s for 300 at 30/s),
    its frames are 2 ticks apart. The signature: an average rate of one frame per tick, and
    stamps further apart than one tick.
    """
    rate, base = stream.average_rate, stream.time_base
    if not rate or not base or rate * base != 1 or len(pts) < 2:
        return 1
    return max(int(np.median(np.diff(pts))), 1)


def _frame_rate(stream, pts: np.ndarray) -> float | None:
    """Frames per second from the stream (average rate, else guessed), or None."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            value = float(rate)
            if rate == stream.average_rate:
                value /= _ticks_per_frame(stream, pts)
            if 0 < value < 100000:
                return value
    return None
