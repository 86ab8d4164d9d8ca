"""The autosave journal: one JSON line per edit, appended in edit order.

A line holds the *new* value of every point and the whole label list the edit changes (see
:mod:`.autosave`). :class:`JournalWriter` appends them: a small edit's line is written and
flushed to the operating system in the editing thread, before the edit call returns; a big
edit's line (accepting 80,000 predictions encodes ~3 MB, a fifth of a second or more) is encoded
and written by the writer's thread, so the GUI thread does not wait for it. Lines stay in edit
order: an edit made while a big one is being written queues behind it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..io.table import SOURCES
from .records import Change, Label, Point, State

log = logging.getLogger(__name__)
BIG_CHANGE = 2_000  # points: an edit touching more is journaled by the writer's thread


def encode_change(change: Change) -> str:
    """One journal line (no newline) for ``change``."""
    entry: dict = {"seq": change.seq, "action": change.action}
    if change.labels is not None:
        entry["labels"] = [[lab.name, lab.colour] for lab in change.labels]
    sets, dels = [], []
    for (frame, label), p in change.points.items():
        if p is None:
            dels.append([frame, label])
        else:
            sets.append([frame, label, p.x, p.y, p.source, p.confidence, p.reviewed])
    if sets:
        entry["set"] = sets
    if dels:
        entry["del"] = dels
    return json.dumps(entry, separators=(",", ":"))


def read_journal(path: str | os.PathLike) -> list[dict]:
    """Journal entries in file order; a torn, garbled or ill-formed line is skipped (logged)."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
                problem = _entry_problem(entry)
            except ValueError:
                problem = "not JSON (cut short by a crash?)"
            if problem:
                log.warning("%s: skipping journal line %d: %s", path, number, problem)
                continue
            entries.append(entry)
    return entries


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _set_ok(item) -> bool:
    if not (isinstance(item, list) and len(item) == 7):
        return False
    frame, label, x, y, source, confidence, reviewed = item
    return (
        _is_int(frame)
        and frame >= 0
        and isinstance(label, str)
        and label != ""
        and _finite(x)
        and _finite(y)
        and source in SOURCES
        and _finite(confidence)
        and 0 <= confidence <= 1
        and isinstance(reviewed, bool)
    )


def _entry_problem(entry) -> str | None:
    """What makes ``entry`` unusable as a journal line (None when it is fine)."""
    if not isinstance(entry, dict) or not _is_int(entry.get("seq")):
        return "no edit number"
    labels = entry.get("labels", [])
    if not (
        isinstance(labels, list)
        and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) and p[0]
            for p in labels
        )
    ):
        return "labels are not [name, colour] pairs"
    sets = entry.get("set", [])
    if not (isinstance(sets, list) and all(_set_ok(item) for item in sets)):
        return (
            "a point is not [frame, label, x, y, source, confidence, reviewed] with finite numbers"
        )
    dels = entry.get("del", [])
    if not (
        isinstance(dels, list)
        and all(
            isinstance(d, list) and len(d) == 2 and _is_int(d[0]) and isinstance(d[1], str)
            for d in dels
        )
    ):
        return "a deletion is not [frame, label]"
    return None


def replay(state: State, entries: list[dict]) -> State:
    """Apply journal entries (checked by :func:`read_journal`), in order, to ``state``."""
    for entry in entries:
        if "labels" in entry:
            state.labels = [Label(name, colour) for name, colour in entry["labels"]]
        for frame, label, x, y, source, confidence, reviewed in entry.get("set", ()):
            state.points[(frame, label)] = Point(
                float(x), float(y), source, float(confidence), reviewed
            )
        for frame, label in entry.get("del", ()):
            state.points.pop((frame, label), None)
        state.seq = max(state.seq, entry["seq"])
    return state


def encode_entry(entry: dict) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"


class JournalWriter:
    """Appends the journal lines of edits to ``path``, in edit order (see the module notes).

    Parameters
    ----------
    path : path-like
        The journal file (created, with its folder, on the first line).
    on_error : callable
        Called with the ``OSError`` when a line cannot be written (in the thread that wrote).
    """

    def __init__(self, path: str | os.PathLike, on_error: Callable[[OSError], None]):
        self.path = Path(path)
        self.on_error = on_error
        self.lock = threading.Lock()  # the open file; held by whoever rewrites the journal
        self._file = None
        self._queue: deque[Change] = deque()  # the head is being written while it is queued
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False

    def append(self, change: Change) -> None:
        """Journal ``change`` (called in the editing thread, right after the edit)."""
        with self._cond:
            if self._queue or len(change.points) > BIG_CHANGE:
                self._queue.append(change)
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="dustrack-journal", daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
                return
        self._write(encode_change(change) + "\n")

    def drain(self) -> None:
        """Wait until every queued line is written."""
        with self._cond:
            while self._queue:
                self._cond.wait()

    def close_file(self) -> None:
        """Close the file (call with :attr:`lock` held, after :meth:`drain`)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Write what is queued, stop the thread, close the file."""
        self.drain()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self.lock:
            self.close_file()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue:
                    return
                change = self._queue[0]  # left queued while written: later edits wait behind
            try:
                self._write(encode_change(change) + "\n")
            finally:
                with self._cond:
                    self._queue.popleft()
                    self._cond.notify_all()

    def _write(self, line: str) -> None:
        try:
            with self.lock:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._file.write(line)
                self._file.flush()  # in the kernel now: survives the process being killed
        except OSError as exc:
            self.on_error(exc)
