"""DeepLabCut point files: ``CollectedData_<scorer>.h5/.csv`` and analysed-video predictions.

The header has rows ``scorer``, (``individuals``,) ``bodyparts``, ``coords``; the row index is
either one image path (``labeled-data/<video>/img<N>.png``), three columns
(``labeled-data``, ``<video>``, ``img<N>.png``; DeepLabCut >= 2.3), or a frame number
(predictions, whose coords include ``likelihood``). Frame numbers come from the digits of the
image name. Empty cells are unlabelled points and become missing rows.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DustrackError
from .atomic import write_atomic
from .sources import PointSource
from .table import labels_of, validate

_FRAME_RE = re.compile(r"(\d+)(?=\.[A-Za-z0-9]+$|$)")


def is_dlc_csv(path: str | os.PathLike) -> bool:
    """True when the CSV's first cell is ``scorer`` (DeepLabCut's header)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.readline().split(",", 1)[0].strip().lower() == "scorer"


def read_dlc(path: str | os.PathLike) -> pd.DataFrame:
    """Read a DeepLabCut CSV or H5 into a point table.

    Labels are the body parts (``<individual>/<bodypart>`` for multi-animal files);
    ``likelihood`` becomes ``confidence`` and marks the rows as ``model`` output. An H5 file
    is read in a child process (see :func:`_read_h5_isolated`).
    """
    path = Path(path)
    if _is_h5(path):
        return _read_h5_isolated(path)
    return _read_dlc_here(path)


def _is_h5(path: Path) -> bool:
    return path.suffix.lower() in (".h5", ".hdf5", ".hdf")


def _read_dlc_here(path: Path) -> pd.DataFrame:
    """:func:`read_dlc` in this process."""
    frame = _load_dlc_frame(path)
    cols = frame.columns
    if cols.nlevels not in (3, 4):
        raise DustrackError(
            "not a DeepLabCut file: expected scorer/bodyparts/coords header rows", path
        )
    frames = _frame_numbers(frame.index, path)
    coords = cols.get_level_values(-1).astype(str)
    parts = cols.get_level_values(-2).astype(str)
    individuals = cols.get_level_values(-3).astype(str) if cols.nlevels == 4 else None
    has_likelihood = "likelihood" in set(coords)
    rows = []
    keys = dict.fromkeys(
        zip(individuals if individuals is not None else [""] * len(parts), parts, strict=False)
    )
    for ind, part in keys:
        sel = (parts == part) & ((individuals == ind) if individuals is not None else True)
        block = frame.loc[:, sel]
        block.columns = coords[sel]
        if not {"x", "y"} <= set(block.columns):
            raise DustrackError(f"body part {part!r} lacks x/y columns", path)
        x = pd.to_numeric(block["x"], errors="coerce").to_numpy(float)
        y = pd.to_numeric(block["y"], errors="coerce").to_numpy(float)
        ok = ~(np.isnan(x) | np.isnan(y))  # NaN: unlabelled; inf is kept for validate to refuse
        label = f"{ind}/{part}" if ind else part
        row = pd.DataFrame({"frame": frames[ok], "label": label, "x": x[ok], "y": y[ok]})
        if has_likelihood:
            lik = pd.to_numeric(block["likelihood"], errors="coerce").to_numpy(float)
            row["confidence"] = np.clip(np.nan_to_num(lik[ok], nan=0.0), 0, 1)
            row["source"] = PointSource.MODEL
        rows.append(row)
    table = (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["frame", "label", "x", "y"])
    )
    if not len(table):
        raise DustrackError("no labelled points in the file", path)
    return validate(table, path)


def _load_dlc_frame(path: Path) -> pd.DataFrame:
    try:
        if _is_h5(path):
            frame = read_hdf_safely(path)
        else:
            frame = _read_dlc_csv(path)
    except DustrackError:
        raise
    except FileNotFoundError:
        raise DustrackError("file not found", path) from None
    except IsADirectoryError:
        raise DustrackError("is a folder, not a point file", path) from None
    except Exception as exc:  # pandas/pytables raise many types on corrupt input
        raise DustrackError(
            f"cannot read as DeepLabCut data ({type(exc).__name__}: {exc})".splitlines()[0], path
        ) from None
    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.columns, pd.MultiIndex):
        raise DustrackError(
            "not a DeepLabCut file: expected scorer/bodyparts/coords header rows", path
        )
    return frame


# --------------------------------------------------------------------------- HDF5 without code
# PyTables unpickles attributes whose bytes end in "." (pandas stores e.g. a ``None`` index
# name so) and the rows of ObjectAtom VLArrays (pandas' object columns in "fixed" files).
# Unpickling a crafted file runs code chosen by whoever wrote it, and DeepLabCut files come from
# collaborators. While we read, PyTables' unpickler is replaced by one that rebuilds plain data
# (None, numbers, strings, lists, tuples, dicts) and refuses every reference to a Python object
# (``find_class``), which is what running code through pickle needs; object arrays are refused
# outright (DeepLabCut never writes them).
class _PickleRefused(BaseException):
    """A BaseException, so that PyTables' ``except Exception`` around attribute unpickling
    cannot swallow it."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise _PickleRefused(f"{module}.{name}")


class _PlainPickle:
    """Stands in for the ``pickle`` module inside PyTables while a file is read."""

    @staticmethod
    def loads(data, **kwargs):
        return _PlainUnpickler(io.BytesIO(bytes(data)), **kwargs).load()

    @staticmethod
    def dumps(*_args, **_kwargs):
        raise _PickleRefused("writing")


_GUARD = threading.Lock()


@contextlib.contextmanager
def _plain_pickle_only():
    """PyTables with its two ``pickle`` references replaced by :class:`_PlainPickle`."""
    import tables.atom
    import tables.attributeset

    modules = (tables.atom, tables.attributeset)
    with _GUARD:
        saved = [m.pickle for m in modules]
        for m in modules:
            m.pickle = _PlainPickle
        try:
            yield
        finally:
            for m, orig in zip(modules, saved, strict=False):
                m.pickle = orig


def _check_hdf_nodes(path: Path) -> None:
    """Refuse an HDF5 file holding pickled Python objects (checked before pandas reads it)."""
    import tables

    with tables.open_file(str(path), mode="r") as h5:
        for node in h5.walk_nodes("/"):
            if isinstance(node, tables.VLArray) and node.atom.kind == "object":
                raise DustrackError(
                    f"node {node._v_pathname} holds pickled Python objects, which can run code; "
                    "refusing to read it (DeepLabCut writes numbers and text only)",
                    path,
                )
            node._v_attrs._f_list("all")  # reads (so checks) every attribute


def read_hdf_safely(path: str | os.PathLike) -> pd.DataFrame:
    """``pd.read_hdf`` of a DeepLabCut H5 in which nothing unpickled can run code (see above)."""
    path = Path(path)
    try:
        with _plain_pickle_only():
            _check_hdf_nodes(path)
            return pd.read_hdf(path)
    except _PickleRefused as exc:
        raise DustrackError(
            f"holds a pickled Python object ({exc}), which could run code; "
            "refusing to read it (DeepLabCut writes numbers and text only)",
            path,
        ) from None


# The HDF5 C library can crash (segfault) on a damaged file, taking napari and the user's
# unsaved work with it: H5 files are read by a short-lived child process (about 1 s) that
# prints the point table as CSV, or the one-line error.
H5_TIMEOUT_S = 120


def _read_h5_isolated(path: Path) -> pd.DataFrame:
    from .table import read_csv_text

    if not path.is_file():
        raise DustrackError(
            "is a folder, not a point file" if path.is_dir() else "file not found", path
        )
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, str(path)],
            capture_output=True,
            env=env,
            timeout=H5_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise DustrackError(
            f"reading took over {H5_TIMEOUT_S} s; is the file damaged?", path
        ) from None
    err = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode == 2 and err:
        raise DustrackError(err[-1], path)
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"status {done.returncode}"
        raise DustrackError(f"damaged HDF5 file: reading it crashed ({how})", path)
    return validate(read_csv_text(done.stdout.decode("utf-8")), path)


def _main(argv: list[str]) -> int:
    """Child process of :func:`_read_h5_isolated`: the table on stdout, or the problem on stderr."""
    try:
        table = _read_dlc_here(Path(argv[0]))
    except DustrackError as exc:
        print(exc.problem, file=sys.stderr)
        return 2
    table.to_csv(sys.stdout, index=False)
    return 0


def _read_dlc_csv(path: Path) -> pd.DataFrame:
    head = pd.read_csv(path, header=None, nrows=4, dtype=str, keep_default_na=False)
    first = head.iloc[:, 0].str.strip().str.lower().tolist()
    if not first or first[0] != "scorer":
        raise DustrackError("not a DeepLabCut file: first cell is not 'scorer'", path)
    n_header = 4 if len(first) > 1 and first[1] == "individuals" else 3
    # Index columns: those whose header cells are empty past the first row (DLC >= 2.3 writes 3).
    row0 = head.iloc[0].tolist()
    n_index = 1
    while n_index < len(row0) and row0[n_index] == "":
        n_index += 1
    frame = pd.read_csv(path, header=list(range(n_header)), index_col=list(range(n_index)))
    names = (
        ["scorer", "individuals", "bodyparts", "coords"]
        if n_header == 4
        else ["scorer", "bodyparts", "coords"]
    )
    frame.columns = frame.columns.set_names(names)
    return frame


def _frame_numbers(index: pd.Index, path) -> np.ndarray:
    if isinstance(index, pd.MultiIndex):
        names = [str(v) for v in index.get_level_values(-1)]
    else:
        names = [str(v) for v in index]
    frames = []
    for name in names:
        match = _FRAME_RE.search(name.strip())
        if match is None:
            raise DustrackError(f"cannot find a frame number in row {name!r}", path)
        frames.append(int(match.group(1)))
    return np.asarray(frames, dtype=np.int64)


def write_dlc(
    table: pd.DataFrame,
    path: str | os.PathLike,
    scorer: str = "dustrack",
    video: str = "video",
    n_frames: int | None = None,
    backup: bool = True,
) -> None:
    """Write a point table as DeepLabCut ``CollectedData`` (``.csv`` or ``.h5`` by suffix).

    Rows are indexed the DeepLabCut >= 2.3 way (``labeled-data``, video, ``img<NNN>.png``),
    zero-padded to the digits of the frame count.
    """
    path = Path(path)
    table = validate(table)
    if table.empty:
        raise DustrackError("no points to export (DeepLabCut files hold at least one)", path)
    last = int(table["frame"].max())
    if n_frames is not None and last >= n_frames:
        raise DustrackError(
            f"the points reach frame {last} but the video has {n_frames} "
            f"frames (0..{n_frames - 1}); are they for this video?",
            path,
        )
    labels = labels_of(table)
    frames = np.unique(table["frame"].to_numpy())
    digits = len(str(max(int(n_frames or 0), int(frames.max()) + 1 if len(frames) else 1)))
    index = pd.MultiIndex.from_tuples(
        [("labeled-data", video, f"img{f:0{digits}d}.png") for f in frames]
    )
    columns = pd.MultiIndex.from_product(
        [[scorer], labels, ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    out = pd.DataFrame(np.nan, index=index, columns=columns)
    pos = {f: i for i, f in enumerate(frames)}
    for lab, grp in table.groupby("label", sort=False):
        rows = [pos[f] for f in grp["frame"]]
        out.iloc[rows, out.columns.get_loc((scorer, lab, "x"))] = grp["x"].to_numpy()
        out.iloc[rows, out.columns.get_loc((scorer, lab, "y"))] = grp["y"].to_numpy()
    if path.suffix.lower() in (".h5", ".hdf5"):
        write_atomic(path, lambda p: out.to_hdf(p, key="df_with_missing", mode="w"), backup=backup)
    else:
        write_atomic(path, lambda p: out.to_csv(p), backup=backup)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
