"""Nothing lost: a process killed (SIGKILL) right after an edit finds the edit on restore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from napari_dustrack.io.table import read_points_csv
from napari_dustrack.session import Point, open_session

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True, bufsize=1
    )


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def test_edit_survives_sigkill_right_after_it(tmp_path):
    video = tmp_path / "cine.mp4"
    # a debounce far longer than the test: no snapshot is ever written, no clean exit happens
    proc = start(f"""
        import time
        from napari_dustrack.session import AnnotationSession, open_session
        s = open_session({str(video)!r}, n_frames=100, delay=3600)
        s.add_label("apex")
        s.add_label("base")
        s.set_point(42, "apex", 12.5, 30.75)
        s.set_point(42, "base", 1.0, 2.0)
        s.set_point(42, "apex", 13.5, 31.75)
        s.delete_point(42, "base")
        print("edited", flush=True)
        time.sleep(3600)
    """)
    try:
        assert proc.stdout.readline().strip() == "edited"
    finally:
        kill(proc)
    session = open_session(video, n_frames=100)
    assert session.labels == ["apex", "base"]
    assert session.point(42, "apex") == Point(13.5, 31.75)
    assert session.point(42, "base") is None and len(session) == 1
    session.close()
    assert read_points_csv(video.with_name("cine.mp4.dustrack") / "points.csv").equals(
        session.table()
    )


def test_killed_mid_editing_restores_every_acknowledged_edit(tmp_path):
    """Kill while edits and background snapshots interleave: the restore is exactly the state
    after the last acknowledged edit (or the one after it, journaled but not yet acknowledged)."""
    video = tmp_path / "cine.mp4"
    proc = start(f"""
        from napari_dustrack.session import AnnotationSession, open_session
        s = open_session({str(video)!r}, n_frames=1000, delay=0.005, max_wait=0.02)
        s.add_label("apex")
        print("ready", flush=True)
        for i in range(1000000):
            s.set_point(i % 1000, "apex", float(i), float(i) / 2)
            print(i, flush=True)
    """)
    try:
        assert proc.stdout.readline().strip() == "ready"
        acknowledged, snapshot = -1, tmp_path / "cine.mp4.dustrack" / "points.csv"
        deadline = time.monotonic() + 120  # a loaded machine may delay the snapshot thread
        # long enough for several snapshots + journal trims, and at least one snapshot written
        while (acknowledged < 1500 or not snapshot.is_file()) and time.monotonic() < deadline:
            acknowledged = int(proc.stdout.readline())
    finally:
        kill(proc)
    for line in proc.stdout:  # edits printed before the kill
        if line.strip():
            acknowledged = int(line)
    assert (tmp_path / "cine.mp4.dustrack" / "points.csv").is_file()  # snapshots ran meanwhile
    session = open_session(video, n_frames=1000, autosave=False)
    assert len(session) == 1000
    last = int(max(session.point(f, "apex").x for f in range(1000)))
    assert last in (acknowledged, acknowledged + 1)
    # and the state is exactly that after edit `last`: every frame holds its latest value
    for f in range(1000):
        i = last - ((last - f) % 1000)
        assert session.point(f, "apex") == Point(float(i), float(i) / 2)
