"""npe2 reader: cines as lazy dask-backed Image layers, point tables as Points layers.

Every layer carries napari ``units`` and ``axis_labels`` (see :mod:`.geometry`): seconds and
mm where the file says, frames and pixels otherwise; data stay in frames and pixels. Colour
cines show in colour; the ultrasound image region (:mod:`napari_dustrack.io.region`) comes as
an outline, and contrast limits from intensity percentiles (dark cines).

Errors in a file the plugin claims (a corrupt video, a malformed point table) become one
napari error notification naming the file, and no layer; files that are not point tables
(any other CSV/JSON/H5) are left to other readers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import DustrackError
from ..io.cine import (
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    VIDEO_SUFFIXES,
    cine_kind,
    is_dicom,
    open_cine,
    open_frames,
)

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
    if suffix in VIDEO_SUFFIXES + TIFF_SUFFIXES + IMAGE_SUFFIXES or is_dicom(path):
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
            return (
                isinstance(content, dict)
                and bool(content)
                and all(isinstance(v, dict) for v in content.values())
            )
        if suffix in (".h5", ".hdf5"):
            import pandas as pd

            with pd.HDFStore(path, mode="r") as store:
                return bool(store.keys())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    except Exception:  # pytables raises its own types for non-HDF5 files
        return False
    return False


def read_cine_layer(path, *, rgb: bool | str | None = None, region: bool = True):
    """Open a cine as a lazy Image layer (plus its ultrasound region's outline, if any).

    Parameters
    ----------
    path : str or PathLike
    rgb : bool or "auto", optional
        Show colour. Default: the ``colour`` setting (``"auto"``: colour when the first frame
        holds colour). Algorithms always read grey frames from their own reader.
    region : bool
        Find the ultrasound image region and outline it.
    """
    from .geometry import cine_geometry

    path = path[0] if isinstance(path, (list, tuple)) else path
    rgb = _colour_setting() if rgb is None else rgb
    try:
        cine = open_cine(path, rgb=rgb, region=region)
    except DustrackError as exc:
        return _report(exc)
    info = cine.metadata(region=True)  # found once, then kept in the sidecar (view.json)
    limits = _display_limits(cine)
    for note in cine.notes:
        _warn(note)
    name = Path(os.fspath(path)).name if Path(path).is_dir() else Path(os.fspath(path)).stem
    geometry = cine_geometry(info)
    meta = {
        "name": name,
        "metadata": {"dustrack": info},
        "rgb": cine.rgb,
        "contrast_limits": list(limits),
        **geometry,
    }
    layers = [(cine.data, meta, "image")]
    if not cine.region.is_full(cine.frame_shape):
        layers.append(_region_layer(cine.region, name, info, geometry))
    return layers


def _display_limits(cine) -> tuple[float, float]:
    """Contrast limits from intensity percentiles of a few frames, kept in the sidecar."""
    from ..io.pixels import contrast_limits
    from ..io.region import sample_indices
    from ..io.sidecar import read_view, update_view

    saved = read_view(cine.path).get("contrast")
    if isinstance(saved, list) and len(saved) == 2:
        return float(saved[0]), float(saved[1])
    # a video's first frames are decoded already (region); other kinds read cheaply anywhere
    n = len(cine)
    picks = range(0, min(n, 24), 8) if cine.kind == "video" else sample_indices(n, 4)
    try:
        limits = contrast_limits([cine.frame(i) for i in picks])
    except DustrackError:  # a damaged frame: it is reported when shown, the cine still opens
        return 0.0, 255.0
    update_view(cine.path, contrast=list(limits))
    return limits


def _region_layer(region, name: str, info: dict, geometry: dict) -> tuple:
    """A Shapes layer outlining the image region on every frame (a 2-D shape over time)."""
    corners = region.outline()
    outline = {
        "name": f"{name} region",
        "shape_type": "rectangle",
        "edge_color": "yellow",
        "face_color": "transparent",
        "edge_width": 2,
        "opacity": 0.6,
        "scale": geometry["scale"][1:],
        "translate": geometry["translate"][1:],
        "units": geometry["units"][1:],
        "axis_labels": geometry["axis_labels"][1:],
        "metadata": {
            "dustrack": {"role": "region", "path": info["path"], "region": info["region"]}
        },
    }
    return [corners], outline, "shapes"


def _colour_setting() -> bool | str:
    """``colour`` in the user settings: ``"auto"`` (default), true or false."""
    from ..settings import load_settings

    value = load_settings().get("colour", "auto")
    return value if isinstance(value, bool) else "auto"


def read_points_layer(path):
    """Read a point table (native CSV, DeepLabCut CSV/H5, DUSTrack JSON) as a Points layer.

    Over a cine the points take its geometry (seconds, mm): the cine shown in the viewer, else
    the video the table belongs to (``<video>.dustrack/points.csv`` or ``<video>*.csv`` next to
    it).
    """
    from ..io.layers import table_to_points
    from ..io.points_io import read_points

    path = path[0] if isinstance(path, (list, tuple)) else path
    try:
        table = read_points(path)
    except DustrackError as exc:
        return _report(exc)
    data, features = table_to_points(table)
    meta = {
        "name": Path(os.fspath(path)).stem,
        "features": features,
        "ndim": 3,
        "metadata": {"dustrack": {"path": str(path), "kind": "points"}},
        **points_geometry(Path(os.fspath(path))),
    }
    return [(data, meta, "points")]


def points_geometry(path: Path) -> dict:
    """Geometry keywords for a point table at ``path`` (empty when no cine is found)."""
    from .geometry import cine_geometry, like

    layer = _shown_cine()
    if layer is not None:
        return like(layer)
    video = _video_of(path)
    if video is None:
        return {}
    try:
        with open_frames(video, region=False) as cine:
            return cine_geometry(cine.metadata())
    except DustrackError:
        return {}


def _shown_cine():
    """The cine layer of the current napari viewer, when there is one viewer with one cine."""
    try:
        from napari import current_viewer
    except ImportError:
        return None
    viewer = current_viewer()
    if viewer is None:
        return None
    from napari.layers import Image

    cines = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image)
        and isinstance(layer.metadata.get("dustrack"), dict)
        and "role" not in layer.metadata["dustrack"]
    ]
    return cines[0] if len(cines) == 1 else None


def _video_of(path: Path) -> Path | None:
    """The cine a point table belongs to: its sidecar's owner, or a cine named like it."""
    from ..io.sidecar import owner_of

    owner = owner_of(path.parent)
    if owner is not None:
        return owner if owner.exists() else None
    stem = path.stem.lower()
    candidates = [
        p
        for p in path.parent.iterdir()
        if p.suffix.lower() in VIDEO_SUFFIXES + TIFF_SUFFIXES + DICOM_SUFFIXES
        and p.is_file()
        and stem.startswith(p.stem.lower())
    ]
    return max(candidates, key=lambda p: len(p.stem)) if candidates else None


def _warn(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _report(exc: DustrackError):
    """Show the one-line error as a napari notification; add no layer."""
    from napari.utils.notifications import show_error

    show_error(str(exc))
    return _NULL_LAYER
