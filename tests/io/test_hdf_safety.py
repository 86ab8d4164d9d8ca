"""A DeepLabCut .h5 from a stranger must not run code: pickled objects are refused unread."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.points_io import read_points, write_points
from napari_dustrack.io.table import make_table


class Payload:
    """Unpickling this object creates ``marker``: the stand-in for an attacker's command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _object_column_file(path: Path, marker: Path) -> Path:
    """A DLC-shaped fixed-format frame whose values are an object block (pickled rows)."""
    cols = pd.MultiIndex.from_product(
        [["me"], ["snout"], ["x", "y"]], names=["scorer", "bodyparts", "coords"]
    )
    frame = pd.DataFrame([[Payload(marker), 1.0]], index=["img000.png"], columns=cols, dtype=object)
    with pytest.warns(pd.errors.PerformanceWarning):
        frame.to_hdf(path, key="df_with_missing", mode="w")
    return path


def _pickled_attribute_file(path: Path, marker: Path) -> Path:
    """A genuine DLC file plus one node attribute holding a pickled object."""
    import tables

    write_points(make_table([0, 3], ["snout", "snout"], [1, 2], [3, 4]), path, backup=False)
    with tables.open_file(str(path), mode="a") as h5:
        h5.get_node("/df_with_missing")._v_attrs.comment = Payload(marker)
    assert not marker.exists()
    return path


CRAFTED = {"object_column": _object_column_file, "pickled_attribute": _pickled_attribute_file}


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_crafted_h5_is_dangerous_to_plain_pandas(tmp_path, kind):
    """The test files are real attacks: plain ``pd.read_hdf`` runs the payload."""
    marker = tmp_path / "ran"
    path = CRAFTED[kind](tmp_path / "CollectedData_x.h5", marker)
    code = (
        "import sys, pandas as pd, tables\n"
        "h5 = tables.open_file(sys.argv[1])\n"
        "[n._v_attrs._f_list('all') for n in h5.walk_nodes('/')]\n"
        "h5.close()\n"
        "try: pd.read_hdf(sys.argv[1])\n"
        "except Exception: pass\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, capture_output=True)
    assert marker.exists()


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_crafted_h5_is_refused_without_running_code(tmp_path, kind):
    marker = tmp_path / "ran"
    path = CRAFTED[kind](tmp_path / "CollectedData_x.h5", marker)
    with pytest.raises(DustrackError, match="pickled Python object") as info:
        read_points(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_cli_export_of_crafted_h5_fails_on_one_line_and_runs_nothing(tmp_path, kind, interop):
    marker = tmp_path / "ran"
    path = CRAFTED[kind](tmp_path / "CollectedData_x.h5", marker)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_dustrack",
            "export",
            str(interop / "tiny_cine.mp4"),
            "--tracks",
            str(path),
            "--out",
            str(tmp_path / "out.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "pickled" in lines[0]
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_pandas_written_dlc_h5_still_reads(tmp_path, interop):
    """Pandas stores ``None`` index names as tiny pickles: plain data still loads."""
    table = make_table([0, 0, 5], ["snout", "tail", "snout"], [1.5, 2, 3], [4, 5, 6.5])
    write_points(table, tmp_path / "CollectedData_me.h5", n_frames=10)
    pd.testing.assert_frame_equal(read_points(tmp_path / "CollectedData_me.h5"), table)
    # the "table" format DeepLabCut uses for analysed videos (pickled column lists in attrs)
    pred = pd.read_csv(interop / "dlc_predictions_filtered.csv", header=[0, 1, 2], index_col=0)
    pred.to_hdf(tmp_path / "video_DLC.h5", key="df_with_missing", format="table", mode="w")
    back = read_points(tmp_path / "video_DLC.h5")
    pd.testing.assert_frame_equal(back, read_points(interop / "dlc_predictions_filtered.csv"))
    assert np.isfinite(back["confidence"]).all()
