"""Damaged saves: rebuilt from the previous snapshot and the journals, damaged files kept aside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.sidecar import sidecar_dir
from napari_dustrack.io.table import read_points_csv
from napari_dustrack.session import Point, open_session
from napari_dustrack.session.autosave import RecoveryWarning, load_state, read_journal

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def killed_session(tmp_path):
    """A session killed after two snapshots and more journaled edits; returns (video, expected)."""
    video = tmp_path / "cine.mp4"
    expected = tmp_path / "expected.csv"
    code = f"""
        import time
        from napari_dustrack.session import AnnotationSession, open_session
        from napari_dustrack.io.table import write_points_csv
        s = open_session({str(video)!r}, n_frames=50, delay=3600)
        s.add_label("01"); s.add_label("NA")
        for f in range(10):
            s.set_point(f, "01", f + 0.5, 2.0)
        s.autosaver.save_now()                      # snapshot 1 (becomes the .bak files)
        for f in range(10, 20):
            s.set_point(f, "NA", 3.0, f + 0.25)
        s.delete_point(3, "01")
        s.rename_label("NA", "None")
        s.autosaver.save_now()                      # snapshot 2 (will be damaged)
        s.set_point(30, "01", 7.0, 7.0)             # journal only
        s.add_label("true")
        s.set_point(31, "true", 8.0, 9.0)
        write_points_csv(s.table(), {str(expected)!r}, backup=False)
        print("edited", flush=True)
        time.sleep(3600)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "edited"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return video, read_points_csv(expected)


@pytest.mark.parametrize(
    "damaged, garbage",
    [
        ("points.csv", "frame,label\n\x00\x00garbage\n"),
        ("labels.json", '{"version": 1, "seq": 3, "labels": [{"na'),
    ],
)
def test_damaged_snapshot_is_rebuilt_and_kept_aside(tmp_path, damaged, garbage):
    video, expected = killed_session(tmp_path)
    folder = sidecar_dir(video)
    assert (folder / "points.csv.bak").is_file() and (folder / "journal.jsonl.bak").is_file()
    (folder / damaged).write_text(garbage)
    with pytest.warns(RecoveryWarning, match="recovered"):
        session = open_session(video, n_frames=50)
    try:
        assert session.recovered and "recovered 21 point(s) of 3 label(s)" in session.recovered
        pd.testing.assert_frame_equal(session.table(), expected)
        assert session.labels == ["01", "None", "true"]
        aside = [p for p in folder.iterdir() if p.name.startswith(f"{damaged}.corrupt-")]
        assert len(aside) == 1 and aside[0].read_text() == garbage  # kept, never deleted
    finally:
        session.close()
    again = open_session(video, n_frames=50)  # the rebuilt work was saved again
    assert again.recovered is None
    pd.testing.assert_frame_equal(again.table(), expected)
    again.close()


def test_bad_journal_lines_are_skipped_and_later_snapshots_work(tmp_path):
    video = tmp_path / "cine.mp4"
    session = open_session(video, n_frames=10, delay=3600)
    session.add_label("a")
    session.set_point(1, "a", 1.0, 2.0)
    session.autosaver.journal.drain()  # every line written (and flushed)
    journal = sidecar_dir(video) / "journal.jsonl"
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write('{"seq": 50, "set": [[2, "a", NaN, 2.0, "manual", 1.0, false]]}\n')
        fh.write('{"seq": 51, "set": [[2, "a"]]}\n')
        fh.write('{"seq": 52, "labels": "a"}\n')
        fh.write('{"seq": 53, "del": [2]}\n')
        fh.write("[1, 2, 3]\n")
        fh.write('{"seq": 54, "set": [[3, "a", 4.0, 5.0, "manual", 1.0, false]]}\n')
    assert [e["seq"] for e in read_journal(journal)] == [1, 2, 54]
    state = load_state(video)
    assert state.points == {(1, "a"): Point(1.0, 2.0), (3, "a"): Point(4.0, 5.0)}
    session.close()
    again = open_session(video, n_frames=10)
    again.set_point(4, "a", 1, 1)
    again.close()  # a snapshot after the bad lines is written and reads back
    assert len(read_points_csv(sidecar_dir(video) / "points.csv")) == 3


def test_damaged_snapshot_with_nothing_to_rebuild_from_is_an_error(tmp_path):
    video = tmp_path / "cine.mp4"
    folder = sidecar_dir(video)
    folder.mkdir()
    (folder / "labels.json").write_text(json.dumps({"labels": 3}))
    with pytest.raises(DustrackError, match="labels.json: not a label list"):
        open_session(video, n_frames=10)
    assert (folder / "labels.json").read_text() == json.dumps({"labels": 3})


def test_a_big_edit_is_journaled_by_the_journal_thread_and_lines_stay_in_order(tmp_path):
    import numpy as np

    from napari_dustrack.session.journal import BIG_CHANGE

    video = tmp_path / "cine.mp4"
    session = open_session(video, n_frames=400, delay=3600)
    labels = [f"p{i}" for i in range(8)]
    for name in labels:
        session.add_label(name)
    xy = np.random.default_rng(0).uniform(5, 50, (400, 8, 2))
    assert session.apply_flow(xy, labels) == 3200 > BIG_CHANGE  # returns before it is written
    journal = session.autosaver.journal
    assert journal._thread is not None  # the big line went to the journal's thread
    session.set_point(5, "p0", 1.0, 2.0)  # a small edit right after: its line comes after
    session.delete_point(6, "p1")
    journal.drain()
    entries = read_journal(sidecar_dir(video) / "journal.jsonl")
    assert [e["seq"] for e in entries] == list(range(1, session.seq + 1))
    assert len(entries[8]["set"]) == 3200
    assert load_state(video).points == session.snapshot()[0]
    session.close()
    again = open_session(video, n_frames=400)
    assert again.snapshot()[0] == session.snapshot()[0]
    again.close()
