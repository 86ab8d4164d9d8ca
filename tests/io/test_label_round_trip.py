"""Label names come back exactly as written, in every point format and through the autosave.

Names a person can type and that type-guessing readers like to change: ``01`` (-> 1), ``1e3``
(-> 1000.0), ``true`` (-> True), ``NA``/``None``/``nan`` (-> missing), commas, quotes, spaces,
unicode. A fixed list of such names plus seeded random ones from an alphabet made of them.
"""

from __future__ import annotations

import random

import pandas as pd
import pytest

from napari_dustrack.io.points_io import read_points, write_points
from napari_dustrack.io.table import make_table
from napari_dustrack.session import open_session
from napari_dustrack.session.autosave import load_state

TRICKY = [
    "01",
    "02",
    "007",
    "NA",
    "N/A",
    "None",
    "null",
    "nan",
    "NaN",
    "true",
    "False",
    "1e3",
    "1.0",
    "-0",
    "0x1F",
    "a, b",
    'say "hi"',
    "é ü 漢字",
    "left apex",
    "#N/A",
    "<NA>",
    "1",
    "inf",
    "tab\there",
    "Ω-point",
]
ALPHABET = list("0123456789eE.+-,\"' _xNAaoneTrufls#/") + ["é", "漢", "Ω"]


def random_names(seed: int, n: int = 12) -> list[str]:
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < n:
        name = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6))).strip()
        if name and name not in names:
            names.append(name)
    return names


NAME_SETS = [TRICKY] + [random_names(seed) for seed in range(5)]


def table_of(names: list[str]) -> pd.DataFrame:
    n = len(names)
    return make_table(
        [i % 7 for i in range(n)], names, [1.5 + i for i in range(n)], [2.25 + i for i in range(n)]
    )


@pytest.mark.parametrize("names", NAME_SETS, ids=["tricky"] + [f"random{i}" for i in range(5)])
@pytest.mark.parametrize(
    "file",
    ["points.csv", "CollectedData_me.csv", "CollectedData_me.h5", "cine_annotations_manual.json"],
)
def test_every_point_format_keeps_label_names(tmp_path, names, file):
    table = table_of(names)
    write_points(table, tmp_path / file)
    back = read_points(tmp_path / file)
    assert set(back["label"]) == set(names)
    key = ["frame", "label"]
    pd.testing.assert_frame_equal(
        back.sort_values(key).reset_index(drop=True)[["frame", "label", "x", "y"]],
        table.sort_values(key).reset_index(drop=True)[["frame", "label", "x", "y"]],
    )


@pytest.mark.parametrize("names", NAME_SETS[:2], ids=["tricky", "random0"])
def test_autosave_snapshot_and_journal_keep_label_names(tmp_path, names):
    names = [n for n in names if n == n.strip()]  # a session trims names it is given
    video = tmp_path / "cine.mp4"
    session = open_session(video, n_frames=10, delay=3600)
    for i, name in enumerate(names):
        session.add_label(name)
        session.set_point(i % 10, name, i + 0.5, i + 1.5)
    # journal only (no snapshot yet), read as a reopened session would
    state = load_state(video)
    assert [lab.name for lab in state.labels] == names
    assert sorted(state.points) == sorted(session.snapshot()[0])
    expected = session.table()
    session.close()  # snapshot: points.csv + labels.json
    again = open_session(video, n_frames=10)
    assert again.labels == names
    pd.testing.assert_frame_equal(again.table(), expected)
    again.close()
