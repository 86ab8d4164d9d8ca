"""The sidecar folder of a video: ``<video>.dustrack/`` beside the video file (or folder).

It holds the user's work on that video so that reopening the video finds it again:

``points.csv``
    The point table (every source; see :mod:`napari_dustrack.io.table`).
``labels.json``
    The labels in display order with their colours, and the edit sequence number the snapshot
    includes (``{"version": 1, "seq": N, "labels": [{"name": ..., "colour": "#rrggbb"}]}``).
``journal.jsonl``
    Edits made since the last snapshot, one JSON line each (see :mod:`napari_dustrack.annotations`).
``measures.json``
    Measurement definitions (written by the measure stage).
``model/``
    The default folder of the heatmap model trained on this video.
``index.npz``, ``frames-<H>x<W>.*``
    The frame index and the grayscale frame cache (see :mod:`napari_dustrack.io.framecache`).
``view.json``
    What opening the video found out and need not find again: the ultrasound image region,
    display contrast limits, whether it holds colour (:func:`read_view`, :func:`update_view`).
    Stamped with the video's size and modification time: a changed video ignores it.

The ``<video>.dustrack`` rule is written here and only here (:func:`sidecar_dir`, and its
inverse :func:`owner_of`); the files above are named here too, except the frame cache's, which
:mod:`~napari_dustrack.io.framecache` names inside :func:`sidecar_dir`. Everything in the folder
is written atomically; this module only names paths and reads/writes the small label and view
files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DustrackError
from .atomic import write_text_atomic

__all__ = [
    "SUFFIX",
    "POINTS",
    "LABELS",
    "JOURNAL",
    "MEASURES",
    "MODEL",
    "VIEW",
    "LABELS_VERSION",
    "sidecar_dir",
    "owner_of",
    "points_path",
    "labels_path",
    "journal_path",
    "measures_path",
    "model_dir",
    "view_path",
    "source_stamp",
    "read_view",
    "update_view",
    "has_sidecar",
    "write_labels",
    "read_labels",
]

SUFFIX = ".dustrack"
POINTS = "points.csv"
LABELS = "labels.json"
JOURNAL = "journal.jsonl"
MEASURES = "measures.json"
MODEL = "model"
VIEW = "view.json"
LABELS_VERSION = 1


def sidecar_dir(video: str | os.PathLike) -> Path:
    """``<video>.dustrack`` next to ``video`` (a file, or a folder of images; a trailing
    slash on the folder changes nothing)."""
    video = Path(os.fspath(video).rstrip("/\\"))
    return video.with_name(video.name + SUFFIX)


def owner_of(folder: str | os.PathLike) -> Path | None:
    """The video whose sidecar ``folder`` is (whether or not it exists), or None when
    ``folder`` is not named like a sidecar."""
    folder = Path(os.fspath(folder).rstrip("/\\"))
    if not folder.name.endswith(SUFFIX) or folder.name == SUFFIX:
        return None
    return folder.with_name(folder.name[: -len(SUFFIX)])


def points_path(video: str | os.PathLike) -> Path:
    """The sidecar's point table."""
    return sidecar_dir(video) / POINTS


def labels_path(video: str | os.PathLike) -> Path:
    """The sidecar's label list."""
    return sidecar_dir(video) / LABELS


def journal_path(video: str | os.PathLike) -> Path:
    """The sidecar's edit journal (edits not yet in a snapshot)."""
    return sidecar_dir(video) / JOURNAL


def measures_path(video: str | os.PathLike) -> Path:
    """The sidecar's measurement definitions."""
    return sidecar_dir(video) / MEASURES


def model_dir(video: str | os.PathLike) -> Path:
    """The default folder of the heatmap model trained on ``video``."""
    return sidecar_dir(video) / MODEL


def view_path(video: str | os.PathLike) -> Path:
    """The sidecar's record of what opening the video found (region, contrast, colour)."""
    return sidecar_dir(video) / VIEW


def source_stamp(video: str | os.PathLike) -> dict:
    """``{"size", "mtime_ns"}`` of a cine file; of a folder of images, the total size and the
    newest file (so an added, removed or rewritten frame changes it).

    Raises
    ------
    OSError
        The cine cannot be read.
    """
    video = Path(video)
    if video.is_dir():
        stats = [entry.stat() for entry in os.scandir(video) if entry.is_file()]
        return {
            "size": sum(st.st_size for st in stats),
            "mtime_ns": max((st.st_mtime_ns for st in stats), default=0),
            "files": len(stats),
        }
    st = video.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_view(video: str | os.PathLike) -> dict:
    """What an earlier open saved with :func:`update_view`; ``{}`` when there is nothing, the
    file is unreadable, or the video changed since."""
    try:
        content = json.loads(view_path(video).read_text(encoding="utf-8"))
        if not isinstance(content, dict) or content.get("stamp") != source_stamp(video):
            return {}
    except (OSError, ValueError):
        return {}
    content.pop("stamp")
    return content


def update_view(video: str | os.PathLike, **found) -> None:
    """Add ``found`` (JSON values) to the video's view record, stamped with the video as it is
    now; nothing happens where the sidecar cannot be written (a read-only folder)."""
    try:
        content = {**read_view(video), **found, "stamp": source_stamp(video)}
        view_path(video).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(view_path(video), json.dumps(content) + "\n", backup=False)
    except OSError:
        pass


def has_sidecar(video: str | os.PathLike) -> bool:
    """Whether ``video`` has saved work (points, labels or unsaved edits)."""
    folder = sidecar_dir(video)
    return any((folder / name).is_file() for name in (POINTS, LABELS, JOURNAL))


def write_labels(folder: str | os.PathLike, labels: list[dict], seq: int = 0) -> Path:
    """Atomically write ``labels.json`` in ``folder``.

    Parameters
    ----------
    folder : path-like
        The sidecar folder (created if missing).
    labels : list of dict
        ``{"name": str, "colour": "#rrggbb"}`` in display order.
    seq : int
        Sequence number of the last edit included in the snapshot this file belongs to.
    """
    content = {
        "version": LABELS_VERSION,
        "seq": int(seq),
        "labels": [{"name": str(d["name"]), "colour": str(d["colour"])} for d in labels],
    }
    return write_text_atomic(Path(folder) / LABELS, json.dumps(content, indent=1) + "\n")


def read_labels(folder: str | os.PathLike, name: str = LABELS) -> tuple[list[dict], int] | None:
    """Read ``labels.json`` (or its backup ``name``) in ``folder``: ``(labels, seq)``, or None
    if there is none.

    Raises
    ------
    DustrackError
        The file exists but is not a label list.
    """
    path = Path(folder) / name
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DustrackError(f"malformed label list ({exc})", path) from None
    items = content.get("labels") if isinstance(content, dict) else None
    if not isinstance(items, list) or not all(isinstance(d, dict) and "name" in d for d in items):
        raise DustrackError(
            "not a label list: expected {'labels': [{'name': ..., 'colour': ...}]}", path
        )
    labels = [{"name": str(d["name"]), "colour": str(d.get("colour", ""))} for d in items]
    return labels, int(content.get("seq", 0))
