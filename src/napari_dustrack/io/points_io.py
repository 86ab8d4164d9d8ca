"""Read and write point tables in any supported format, chosen by file name and content."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DustrackError
from .dlc import is_dlc_csv, read_dlc, write_dlc
from .dustrack_json import read_dustrack_json, write_dustrack_json
from .table import read_points_csv, write_points_csv

FORMATS = ("csv", "dlc", "dustrack")


def guess_format(path: str | os.PathLike) -> str:
    """``csv`` (native), ``dlc`` (DeepLabCut CSV/H5) or ``dustrack`` (DUSTrack JSON)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return "dlc"
    if suffix == ".json":
        return "dustrack"
    if suffix == ".csv":
        if path.exists() and is_dlc_csv(path):
            return "dlc"
        return "csv"
    raise DustrackError(
        f"unsupported point file type {suffix or '(none)'}; use .csv, .h5 or .json", path
    )


def output_format(path: str | os.PathLike) -> str | None:
    """The format to write ``path`` in, from its name alone (None when the name does not say).

    ``.h5``/``.hdf5`` and CSVs named ``CollectedData*`` are DeepLabCut, ``.json`` is DUSTrack,
    other ``.csv`` the native table.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5") or (suffix == ".csv" and path.name.startswith("CollectedData")):
        return "dlc"
    return {".json": "dustrack", ".csv": "csv"}.get(suffix)


def read_points(path: str | os.PathLike) -> pd.DataFrame:
    """Read a point table from a native CSV, DeepLabCut CSV/H5 or DUSTrack JSON file."""
    path = Path(path)
    if not path.exists():
        raise DustrackError("file not found", path)
    if path.is_dir():
        raise DustrackError("is a folder, not a point file", path)
    if path.stat().st_size == 0:
        raise DustrackError("file is empty", path)
    fmt = guess_format(path)
    if fmt == "dlc":
        return read_dlc(path)
    if fmt == "dustrack":
        return read_dustrack_json(path)
    return read_points_csv(path)


def write_points(
    table: pd.DataFrame, path: str | os.PathLike, fmt: str | None = None, **kwargs
) -> Path:
    """Write ``table`` to ``path`` atomically; the format follows ``fmt`` or the suffix."""
    path = Path(path)
    fmt = fmt or output_format(path)
    if fmt == "dlc":
        write_dlc(table, path, **kwargs)
    elif fmt == "dustrack":
        write_dustrack_json(table, path, **kwargs)
    elif fmt == "csv":
        write_points_csv(table, path, **kwargs)
    else:
        raise DustrackError(
            f"unknown format {fmt!r}; use .csv, .h5 or .json or one of {FORMATS}", path
        )
    return path
