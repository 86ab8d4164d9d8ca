"""The sidecar folder ``<video>.dustrack/``: paths, snapshot + journal, autosave, restore."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io import sidecar
from napari_dustrack.io.table import read_points_csv
from napari_dustrack.session import AnnotationSession, Point, open_session
from napari_dustrack.session.autosave import encode_change, load_state, read_journal


def wait_for(predicate, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_paths(tmp_path):
    video = tmp_path / "scan 1.mp4"
    assert sidecar.sidecar_dir(video) == tmp_path / "scan 1.mp4.dustrack"
    assert sidecar.points_path(video) == tmp_path / "scan 1.mp4.dustrack" / "points.csv"
    assert sidecar.labels_path(video).name == "labels.json"
    assert sidecar.journal_path(video).name == "journal.jsonl"
    assert sidecar.measures_path(video).name == "measures.json"
    frames = tmp_path / "frames"
    assert sidecar.sidecar_dir(str(frames) + "/") == tmp_path / "frames.dustrack"  # image folder
    assert sidecar.model_dir(str(frames) + "/") == tmp_path / "frames.dustrack" / "model"
    assert sidecar.owner_of(tmp_path / "scan 1.mp4.dustrack") == video
    assert sidecar.owner_of(str(tmp_path / "frames.dustrack") + "/") == frames
    assert sidecar.owner_of(tmp_path / "frames") is None
    assert not sidecar.has_sidecar(video)
    sidecar.sidecar_dir(video).mkdir()  # e.g. only the frame cache lives there
    assert not sidecar.has_sidecar(video)


def test_labels_file_round_trip_and_errors(tmp_path):
    labels = [{"name": "apex", "colour": "#ff0000"}, {"name": "base", "colour": "#00ff00"}]
    sidecar.write_labels(tmp_path, labels, seq=7)
    assert sidecar.read_labels(tmp_path) == (labels, 7)
    assert sidecar.read_labels(tmp_path / "none") is None
    (tmp_path / "labels.json").write_text("{not json")
    with pytest.raises(DustrackError, match="labels.json: malformed label list"):
        sidecar.read_labels(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"labels": "apex"}))
    with pytest.raises(DustrackError, match="not a label list"):
        sidecar.read_labels(tmp_path)


def test_autosave_writes_snapshot_after_a_pause_and_restores(tmp_path):
    video = tmp_path / "cine.mp4"
    session = open_session(video, n_frames=50, delay=0.1)
    session.add_label("apex")
    session.add_label("base", "#123456")
    session.set_point(3, "apex", 1.5, 2.25)
    session.apply_flow(np.full((50, 1, 2), 7.0), ["base"], confidence=np.full((50, 1), 0.5))
    session.accept(10, 12)
    folder = sidecar.sidecar_dir(video)
    assert (folder / "journal.jsonl").is_file()  # every edit is journaled at once
    assert wait_for(lambda: not session.autosaver.dirty and not (folder / "journal.jsonl").exists())
    on_disk = read_points_csv(folder / "points.csv")
    assert on_disk.equals(session.table())
    labels, seq = sidecar.read_labels(folder)
    assert labels == [
        {"name": "apex", "colour": session.colour("apex")},
        {"name": "base", "colour": "#123456"},
    ]
    assert seq == session.seq
    expected = session.table()
    session.close()

    again = open_session(video, n_frames=50)
    assert again.labels == ["apex", "base"] and again.colour("base") == "#123456"
    assert again.table().equals(expected)
    assert again.point(11, "base").reviewed and not again.point(13, "base").reviewed
    assert not again.can_undo  # restored state is the start of the new session's history
    again.close()


def test_close_flushes_at_once(tmp_path):
    video = tmp_path / "cine.mp4"
    session = open_session(video, n_frames=5, delay=60)
    session.add_label("apex")
    session.set_point(1, "apex", 3, 4)
    assert not sidecar.points_path(video).exists()  # still debouncing
    session.close()
    assert read_points_csv(sidecar.points_path(video)).equals(session.table())
    assert not sidecar.journal_path(video).exists()


def test_journal_alone_restores_and_torn_line_is_skipped(tmp_path):
    video = tmp_path / "cine.mp4"
    session = open_session(video, n_frames=5, delay=60)  # no snapshot will come
    session.add_label("apex")
    session.set_point(1, "apex", 3, 4)
    session.set_point(2, "apex", 5, 6)
    session.delete_point(1, "apex")
    expected = session.table()
    journal = sidecar.journal_path(video)
    with open(journal, "a", encoding="utf-8") as fh:
        fh.write('{"seq": 99, "set": [[4, "apex", 1')  # a write cut short by a crash
    state = load_state(video)
    assert state.points == {(2, "apex"): Point(5.0, 6.0)}
    assert [lab.name for lab in state.labels] == ["apex"]
    assert state.seq == session.seq
    assert len(read_journal(journal)) == 4
    del session  # (its autosaver is replaced by the next open)
    again = open_session(video, n_frames=5)
    assert again.table().equals(expected)
    again.close()


def test_replaying_a_journal_over_a_newer_snapshot_is_harmless(tmp_path):
    """A crash after points.csv was replaced but before the journal was trimmed."""
    video = tmp_path / "cine.mp4"
    session = AnnotationSession(n_frames=10, labels=["a", "b"])
    lines = []
    session.on_change.append(lambda change: lines.append(encode_change(change)))
    session.set_point(1, "a", 1, 1)
    session.set_point(1, "a", 2, 2)
    session.rename_label("b", "c")
    session.set_point(2, "c", 3, 3)
    session.delete_point(1, "a")
    session.set_point(1, "a", 4, 4)
    folder = sidecar.sidecar_dir(video)
    folder.mkdir()
    from napari_dustrack.io.table import write_points_csv

    write_points_csv(session.table(), folder / "points.csv")  # newest snapshot...
    sidecar.write_labels(
        folder, [{"name": "a", "colour": "#000000"}, {"name": "b", "colour": "#111111"}], 0
    )
    (folder / "journal.jsonl").write_text("".join(line + "\n" for line in lines))  # ...old journal
    state = load_state(video)
    assert [lab.name for lab in state.labels] == ["a", "c"]
    assert state.points == {(1, "a"): Point(4.0, 4.0), (2, "c"): Point(3.0, 3.0)}


def test_points_of_unlisted_labels_keep_their_label(tmp_path):
    video = tmp_path / "cine.mp4"
    folder = sidecar.sidecar_dir(video)
    folder.mkdir()
    (folder / "points.csv").write_text("frame,label,x,y\n0,apex,1,2\n3,base,4,5\n")
    session = open_session(video, n_frames=10, autosave=False)
    assert session.labels == ["apex", "base"]
    assert session.point(3, "base") == Point(4.0, 5.0)


def test_corrupt_sidecar_is_reported_not_overwritten(tmp_path):
    video = tmp_path / "cine.mp4"
    folder = sidecar.sidecar_dir(video)
    folder.mkdir()
    (folder / "points.csv").write_text("frame,label,x\n0,apex,1\n")
    with pytest.raises(DustrackError, match="points.csv: not a point table: missing column"):
        open_session(video, n_frames=10)
    assert (folder / "points.csv").read_text() == "frame,label,x\n0,apex,1\n"


def test_second_session_of_a_video_takes_over_in_this_process(tmp_path):
    video = tmp_path / "cine.mp4"
    first = open_session(video, n_frames=10, delay=60)
    first.add_label("apex")
    first.set_point(0, "apex", 1, 1)
    second = open_session(video, n_frames=10, delay=60)  # saves and stops the first
    assert first.autosaver is None or first.autosaver._closed
    assert second.point(0, "apex") == Point(1.0, 1.0)
    second.set_point(1, "apex", 2, 2)
    second.close()
    assert len(read_points_csv(sidecar.points_path(video))) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX file locks")
def test_another_process_editing_the_same_video_is_refused(tmp_path):
    video = tmp_path / "cine.mp4"
    code = (
        "import sys, time\n"
        "from napari_dustrack.session import open_session\n"
        f"s = open_session({str(video)!r}, n_frames=5)\n"
        "print('open', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "open"
        with pytest.raises(DustrackError, match="open in another program"):
            open_session(video, n_frames=5)
    finally:
        proc.kill()
        proc.wait()
    open_session(video, n_frames=5).close()  # the lock died with the process


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_place_keeps_edits_in_memory_with_an_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        session = open_session(folder / "cine.mp4", n_frames=5)
        session.add_label("apex")
        session.set_point(0, "apex", 1, 1)
        assert isinstance(session.autosaver.error, DustrackError)
        assert len(session) == 1
        with pytest.raises(DustrackError, match="cannot save annotations"):
            session.close()
    finally:
        folder.chmod(0o755)
