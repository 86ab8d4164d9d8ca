"""Damaged files: every reader answers with a DustrackError or valid data, never another error.

Seeded random truncations and byte flips of one small file per supported format (point tables
in all four formats, an MP4, a TIFF stack, a multi-frame DICOM). Reading means what a user's
command does: the whole point table, and every frame of a cine.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import media
import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.points_io import read_points, write_points
from napari_dustrack.io.table import COLUMNS, make_table

N_VARIANTS = 24  # per format: half truncations, half byte flips
N_H5 = 8  # each H5 read starts a child process (about 1 s)


def damaged_variants(data: bytes, seed: int, n: int = N_VARIANTS) -> list[tuple[str, bytes]]:
    """``(how, bytes)``: truncations at random lengths, and 1-8 random bytes overwritten."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            cut = rng.randrange(0, len(data))
            out.append((f"truncated at {cut}", data[:cut]))
        else:
            buf = bytearray(data)
            spots = [rng.randrange(len(buf)) for _ in range(rng.randint(1, 8))]
            for pos in spots:
                buf[pos] = rng.randrange(256)
            out.append((f"bytes {spots} changed", bytes(buf)))
    return out


def check_table(table) -> None:
    assert isinstance(table, pd.DataFrame) and list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert np.isfinite(table[["x", "y"]].to_numpy(float)).all()
    assert (table["frame"] >= 0).all() and table["label"].map(lambda v: isinstance(v, str)).all()


POINT_FILES = [
    "points.csv",
    "CollectedData_me.csv",
    "CollectedData_me.h5",
    "cine_annotations_manual.json",
]


@pytest.mark.parametrize("name", POINT_FILES)
def test_damaged_point_files(tmp_path, name):
    table = make_table(
        [0, 0, 4, 9, 12], ["01", "NA", "01", "a, b", "NA"], [1.5, 2, 3, 4, 5], [6, 7, 8.5, 9, 10]
    )
    source = write_points(table, tmp_path / "good" / name)
    data = source.read_bytes()
    outcomes = {"error": 0, "table": 0}
    n = N_H5 if name.endswith(".h5") else N_VARIANTS
    for i, (how, damaged) in enumerate(damaged_variants(data, POINT_FILES.index(name), n)):
        path = tmp_path / str(i) / name
        path.parent.mkdir()
        path.write_bytes(damaged)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = read_points(path)
        except DustrackError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc), how
            outcomes["error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{name} {how}: {type(exc).__name__}: {exc}")
        check_table(result)
        outcomes["table"] += 1
    assert outcomes["error"] > 0  # the damage was real


def _cine_files(folder: Path) -> dict[str, Path]:
    frames = media.make_frames(6, h=32, w=48)
    import tifffile

    tif = folder / "stack.tif"
    tifffile.imwrite(tif, frames)
    return {
        "mp4": media.write_video(folder / "cine.mp4", frames, fps=25, gop=3),
        "tif": tif,
        "dcm": media.write_dicom(folder / "cine.dcm", frames),
    }


@pytest.mark.parametrize("kind", ["mp4", "tif", "dcm"])
def test_damaged_cines(tmp_path, kind):
    from napari_dustrack.io.cine import open_cine

    (tmp_path / "good").mkdir()
    source = _cine_files(tmp_path / "good")[kind]
    data = source.read_bytes()
    errors = 0
    for i, (how, damaged) in enumerate(damaged_variants(data, seed=7, n=16)):
        path = tmp_path / str(i) / source.name
        path.parent.mkdir()
        path.write_bytes(damaged)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cine = open_cine(path, fill_cache=False)
                try:
                    frames = [np.asarray(cine[j]) for j in range(len(cine))]
                finally:
                    cine.close()
        except DustrackError as exc:
            assert "\n" not in str(exc), how
            errors += 1
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{kind} {how}: {type(exc).__name__}: {exc}")
        assert all(f.ndim == 2 and f.shape == frames[0].shape for f in frames), how
    assert errors > 0
