"""Writers of small real media files for the reader tests (PyAV, pydicom, tifffile, OpenCV).

Every frame differs from its neighbours (a texture that moves one pixel per frame plus a
frame-number bar code), so reading the wrong frame shows up in comparisons.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def make_frames(n: int, h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """``(n, h, w)`` uint8 frames: smooth moving texture + a binary code of the frame index."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h + n + 8, w + n + 8)).astype(np.float32)
    # blur a little so codecs keep it, yet it still has structure everywhere
    from scipy.ndimage import gaussian_filter

    base = gaussian_filter(base, 1.5)
    base = (base - base.min()) / (base.max() - base.min()) * 200 + 20
    frames = np.empty((n, h, w), dtype=np.uint8)
    for i in range(n):
        frame = base[i : i + h, i // 2 : i // 2 + w].copy()
        for bit in range(8):  # 8 blocks of 8x8 at the top, white where the bit is set
            frame[:8, bit * 8 : (bit + 1) * 8] = 250 if (i >> bit) & 1 else 5
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_video(
    path,
    frames: np.ndarray,
    fps: float = 25,
    codec: str = "libx264",
    gop: int = 10,
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    container_options: dict | None = None,
) -> Path:
    """Encode ``frames`` (gray ``(N, H, W)`` or RGB ``(N, H, W, 3)``) with PyAV."""
    from fractions import Fraction

    import av

    path = Path(path)
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        opts = {"g": str(gop)}
        if codec == "libx264":
            opts.update(
                {
                    "preset": "fast",
                    "crf": "18",
                    "keyint_min": str(gop),
                    "sc_threshold": "0",
                    "bf": "2",
                }
            )
        opts.update(options or {})
        stream.options = opts
        fmt = "gray" if frames.ndim == 3 else "rgb24"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=fmt)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decode_all(path, fmt: str = "gray") -> np.ndarray:
    """Every frame of ``path`` decoded in order by PyAV itself (the reference)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format=fmt) for f in container.decode(video=0)])


def write_empty_video(path) -> Path:
    """An MP4 whose video stream holds no frames."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    return Path(path)


def write_audio(path, seconds: float = 0.5) -> Path:
    """A WAV file (audio only)."""
    import av

    rate = 8000
    samples = (np.sin(np.arange(int(rate * seconds)) / 5) * 10000).astype(np.int16)[None]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


# -- DICOM ------------------------------------------------------------------------------------
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def _dicom_dataset(n, h, w, samples=1, photometric="MONOCHROME2", bits=8):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.PatientName = "Test^Phantom"
    ds.NumberOfFrames = n
    ds.Rows, ds.Columns = h, w
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    return ds


def us_region(dx_cm: float, dy_cm: float, w: int, h: int):
    """One Sequence of Ultrasound Regions item in cm (units code 3)."""
    from pydicom.dataset import Dataset

    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = w - 1, h - 1
    region.PhysicalUnitsXDirection = 3
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = dx_cm
    region.PhysicalDeltaY = dy_cm
    return region


def write_dicom(
    path,
    frames: np.ndarray,
    frame_time_ms: float | None = 40.0,
    cine_rate: int | None = None,
    region_cm: tuple[float, float] | None = (0.02, 0.03),
    pixel_spacing_mm: tuple[float, float] | None = None,
    photometric: str | None = None,
) -> Path:
    """Uncompressed multi-frame DICOM: gray ``(N,H,W)`` (8/16 bit) or RGB ``(N,H,W,3)``.

    ``region_cm`` is (dx, dy) Physical Delta X/Y in cm.
    """
    n, h, w = frames.shape[:3]
    samples = 1 if frames.ndim == 3 else frames.shape[3]
    bits = frames.dtype.itemsize * 8
    photometric = photometric or ("MONOCHROME2" if samples == 1 else "RGB")
    ds = _dicom_dataset(n, h, w, samples, photometric, bits)
    if frame_time_ms is not None:
        ds.FrameTime = frame_time_ms
    if cine_rate is not None:
        ds.CineRate = cine_rate
    if region_cm is not None:
        ds.SequenceOfUltrasoundRegions = [us_region(region_cm[0], region_cm[1], w, h)]
    if pixel_spacing_mm is not None:
        ds.PixelSpacing = list(pixel_spacing_mm)
    ds.PixelData = np.ascontiguousarray(frames).astype(frames.dtype.newbyteorder("<")).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def write_dicom_jpeg(path, frames: np.ndarray, quality: int = 95) -> Path:
    """JPEG Baseline (Pillow-encoded frames, encapsulated) RGB cine, as ultrasound exports do."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    n, h, w = frames.shape[:3]
    rgb = frames if frames.ndim == 4 else np.repeat(frames[..., None], 3, axis=-1)
    ds = _dicom_dataset(n, h, w, 3, "YBR_FULL_422", 8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.FrameTime = 20.0
    ds.SequenceOfUltrasoundRegions = [us_region(0.01, 0.01, w, h)]
    encoded = []
    for frame in rgb:
        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buf, format="JPEG", quality=quality)
        encoded.append(buf.getvalue())
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def write_dicom_rle(path, frames: np.ndarray) -> Path:
    """RLE Lossless compressed gray cine (pydicom's own encoder)."""
    from pydicom.uid import RLELossless

    ds = _dicom_dataset(frames.shape[0], frames.shape[1], frames.shape[2])
    ds.CineRate = 50
    ds.PixelSpacing = [0.25, 0.5]
    ds.compress(RLELossless, np.ascontiguousarray(frames))
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def write_dicom_jpegls_stub(path, n: int = 3, h: int = 32, w: int = 32) -> Path:
    """A JPEG-LS cine (frames are opaque bytes): readable only with a JPEG-LS decoder."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    ds = _dicom_dataset(n, h, w)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(64) + b"\xff\xd9" for _ in range(n)])
    ds["PixelData"].VR = "OB"
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


# -- images -----------------------------------------------------------------------------------
def write_png_folder(folder, frames: np.ndarray, pattern: str = "img{}.png") -> Path:
    """Frames as ``img0.png, img1.png, ...`` (not zero-padded: natural order matters)."""
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        image = frame if frame.ndim == 2 else frame[..., ::-1]  # RGB -> OpenCV's BGR
        assert cv2.imwrite(str(folder / pattern.format(i)), image)
    return folder
