"""npe2 reader: cines as lazy dask-backed Image layers, point tables as Points layers.

Errors in a file the plugin claims (a corrupt video, a malformed point table) become one
napari error notification naming the file, and no layer; files that are not point tables
(any other CSV/JSON/H5) are left to other readers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DustrackError
from ..io.cine import TIFF_SUFFIXES, VIDEO_SUFFIXES, cine_kind, is_dicom, open_cine

POINT_SUFFIXES = (".csv", ".h5", ".hdf5", ".json")
_NATIVE_COLUMNS = {"frame", "label", "x", "y"}
_NULL_LAYER = [(None,)]  # napari's "read fine, nothing to add" sentinel


def get_reader(path):
    """Return a reader function for ``path``, or None when this plugin does not read it."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(os.fspath(path))
    suffix = path.suffix.lower()
    if suffix in POINT_SUFFIXES and path.is_file():
        return read_points_layer if is_point_file(path) else None
    if path.is_dir():
        return read_cine_layer if cine_kind(path) == "images" else None
    if suffix in VIDEO_SUFFIXES + TIFF_SUFFIXES or is_dicom(path):
        return read_cine_layer
    return None


def is_point_file(path: Path) -> bool:
    """Cheap check that ``path`` is meant as a point table (not that it is a valid one)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            with open(path, encoding="utf-8", errors="replace") as fh:
                header = fh.readline()
            cells = {c.strip().strip('"').lower() for c in header.split(",")}
            return _NATIVE_COLUMNS <= cells or "scorer" in cells
        if suffix == ".json":
            if "_annotations_" in path.name.lower():
                return True
            content = json.loads(path.read_text(encoding="utf-8"))
            return (isinstance(content, dict) and bool(content)
                    and all(isinstance(v, dict) for v in content.values()))
        if suffix in (".h5", ".hdf5"):
            import pandas as pd

            with pd.HDFStore(path, mode="r") as store:
                return bool(store.keys())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    except Exception:  # pytables raises its own types for non-HDF5 files
        return False
    return False


def read_cine_layer(path):
    """Open a cine as one Image layer backed by a lazy dask array."""
    path = path[0] if isinstance(path, (list, tuple)) else path
    try:
        cine = open_cine(path)
    except DustrackError as exc:
        return _report(exc)
    spacing = cine.pixel_spacing
    scale = (1.0, *spacing) if spacing is not None else (1.0, 1.0, 1.0)
    meta = {
        "name": Path(os.fspath(path)).stem if not Path(path).is_dir() else Path(path).name,
        "metadata": {"dustrack": cine.metadata()},
        "scale": scale,
        "contrast_limits": [0, 255],  # frames are uint8: no pass over the video needed
        "rgb": cine.rgb,
    }
    return [(cine.data, meta, "image")]


def read_points_layer(path):
    """Read a point table (native CSV, DeepLabCut CSV/H5, DUSTrack JSON) as a Points layer."""
    from ..io.layers import table_to_points
    from ..io.points_io import read_points

    path = path[0] if isinstance(path, (list, tuple)) else path
    try:
        table = read_points(path)
    except DustrackError as exc:
        return _report(exc)
    data, features = table_to_points(table)
    meta = {"name": Path(os.fspath(path)).stem, "features": features, "ndim": 3,
            "metadata": {"dustrack": {"path": str(path), "kind": "points"}}}
    return [(data, meta, "points")]


def _report(exc: DustrackError):
    """Show the one-line error as a napari notification; add no layer."""
    from napari.utils.notifications import show_error

    show_error(str(exc))
    return _NULL_LAYER
