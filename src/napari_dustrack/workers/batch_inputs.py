"""What a batch is asked to do, and how each input is known again on a rerun: the settings,
the cines named by the inputs, their output names and the fingerprints (video size and mtime,
model checksum, settings) that tell a rerun a video is complete (see :mod:`.batch`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io.sidecar import SUFFIX as SIDECAR_SUFFIX

DEFAULT_CHUNK_FRAMES = 1000
PARTS = ".parts"
_VIDEO_DIR_SKIP = (SIDECAR_SUFFIX, PARTS)


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BatchSettings:
    """What a batch computes and how it splits the work.

    Attributes
    ----------
    smooth : float or None
        Smoothing window in seconds (None: raw predictions only).
    mode : str
        Smoother mode (``fusion``, ``dustrack`` or ``fast``).
    chunk_frames : int
        Frames per task; rounded up to a multiple of ``batch_size`` for prediction. Outputs do
        not depend on it.
    batch_size : int
        Frames per forward pass of the model.
    threads : int or None
        torch threads per task (None: the worker host's cores shared among its workers).
    """

    smooth: float | None = None
    mode: str = "fusion"
    chunk_frames: int = DEFAULT_CHUNK_FRAMES
    batch_size: int = 16
    threads: int | None = None

    def result_fields(self) -> dict:
        """The settings the outputs depend on (part of every video's fingerprint)."""
        from .. import __version__

        return {
            "smooth": self.smooth,
            "mode": self.mode if self.smooth else None,
            "batch_size": self.batch_size,
            "napari_dustrack": __version__,
        }


# ----------------------------------------------------------------------------- inputs
def expand_videos(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """The cines named by ``inputs``: files as given, folders expanded to the cines inside.

    A folder of PNG/JPEG frames is itself one cine; any other folder contributes its video,
    DICOM and TIFF files (not recursively, sidecar folders left out). Paths that do not exist
    are kept, so that they are reported as failures with the rest of the batch.
    """
    from ..io.cine import DICOM_SUFFIXES, TIFF_SUFFIXES, VIDEO_SUFFIXES, cine_kind

    suffixes = VIDEO_SUFFIXES + DICOM_SUFFIXES + TIFF_SUFFIXES
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir() or cine_kind(path) == "images":
            out.append(path)
            continue
        for child in sorted(path.iterdir()):
            if child.name.startswith(".") or child.name.endswith(_VIDEO_DIR_SKIP):
                continue
            if child.is_file() and child.suffix.lower() in suffixes:
                out.append(child)
            elif child.is_dir() and cine_kind(child) == "images":
                out.append(child)
    return list(dict.fromkeys(p.absolute() for p in out))


def output_names(videos: Sequence[Path]) -> dict[Path, str]:
    """A file-name stem per video: its own stem, with a short path hash where stems clash."""
    stems: dict[str, int] = {}
    for v in videos:
        stems[v.stem] = stems.get(v.stem, 0) + 1
    return {v: v.stem if stems[v.stem] == 1 else f"{v.stem}-{_digest(str(v))[:6]}" for v in videos}


def model_fingerprint(model_dir: str | os.PathLike) -> dict:
    """What identifies a model's predictions: weights checksum, iteration and labels."""
    from ..tracking.heatmap.store import read_meta

    meta = read_meta(model_dir)
    return {
        "sha256": meta["sha256"],
        "iteration": int(meta["iteration"]),
        "labels": list(meta["labels"]),
    }


def video_fingerprint(path: Path) -> dict:
    """Size and modification time of a video (of every file, for a folder of frames)."""
    st = path.stat()
    if path.is_dir():
        files = [p.stat() for p in sorted(path.iterdir()) if p.is_file()]
        return {
            "path": str(path),
            "size": sum(s.st_size for s in files),
            "mtime_ns": max([s.st_mtime_ns for s in files] or [st.st_mtime_ns]),
            "files": len(files),
        }
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def fingerprint_token(fingerprint: dict) -> str:
    return _digest(json.dumps(fingerprint, sort_keys=True))[:16]
