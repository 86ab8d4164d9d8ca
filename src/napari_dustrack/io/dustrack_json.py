"""DUSTrack's annotation layer files: ``<video>_annotations_<layer>.json``.

The content is ``{label: {frame: [x, y]}}`` with frames as strings. The layer name in the file
name sets the ``source`` (``manual`` for DUSTrack's manual layer).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from ..errors import DustrackError
from .atomic import write_text_atomic
from .table import validate

_LAYER_RE = re.compile(r"_annotations_(?P<layer>[^/\\]+)\.json$", re.IGNORECASE)
_LAYER_SOURCE = {
    "manual": "manual",
    "flow": "flow",
    "lk": "flow",
    "model": "model",
    "dlc": "model",
    "smoothed": "smoothed",
    "filtered": "smoothed",
}


def layer_of(path: str | os.PathLike) -> str | None:
    """The layer name in ``<video>_annotations_<layer>.json``, or None."""
    match = _LAYER_RE.search(Path(path).name)
    return match.group("layer") if match else None


def read_dustrack_json(path: str | os.PathLike) -> pd.DataFrame:
    """Read a DUSTrack annotation JSON into a point table."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DustrackError("file not found", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DustrackError(f"malformed JSON ({exc})", path) from None
    if not isinstance(content, dict):
        raise DustrackError("expected a JSON object {label: {frame: [x, y]}}", path)
    source = _LAYER_SOURCE.get((layer_of(path) or "manual").lower(), "manual")
    rows = []
    for label, points in content.items():
        if not isinstance(points, dict):
            raise DustrackError(f"label {label!r}: expected {{frame: [x, y]}}", path)
        for frame, xy in points.items():
            if xy is None:
                continue
            if not (isinstance(xy, (list, tuple)) and len(xy) == 2):
                raise DustrackError(
                    f"label {label!r} frame {frame}: expected [x, y], got {xy!r}", path
                )
            try:
                f, x, y = int(frame), float(xy[0]), float(xy[1])
            except (TypeError, ValueError):
                raise DustrackError(f"label {label!r} frame {frame!r}: not numbers", path) from None
            if math.isnan(x) or math.isnan(y):
                raise DustrackError(f"label {label!r} frame {f}: NaN coordinates", path)
            rows.append((f, str(label), x, y))
    table = pd.DataFrame(rows, columns=["frame", "label", "x", "y"])
    table["source"] = source
    return validate(table, path)


def write_dustrack_json(table: pd.DataFrame, path: str | os.PathLike, backup: bool = True) -> None:
    """Write a point table as DUSTrack JSON (labels in order of appearance, frames ascending)."""
    table = validate(table)
    content: dict[str, dict[str, list[float]]] = {}
    for label, grp in table.groupby("label", sort=False):
        content[label] = {
            str(int(f)): [float(x), float(y)]
            for f, x, y in sorted(zip(grp["frame"], grp["x"], grp["y"], strict=False))
        }
    write_text_atomic(path, json.dumps(content, indent=4), backup=backup)


def dustrack_json_name(video: str | os.PathLike, layer: str = "manual") -> Path:
    """DUSTrack's file name for a layer of a video: ``<video stem>_annotations_<layer>.json``."""
    video = Path(video)
    return video.with_name(f"{video.stem}_annotations_{layer}.json")
