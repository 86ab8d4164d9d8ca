"""Autosave of an :class:`~napari_dustrack.annotations.AnnotationSession` to the video's sidecar.

Two layers make "nothing lost" hold even when the process is killed right after an edit:

1. **Journal** — every edit is appended to ``journal.jsonl`` as one JSON line and flushed to
   the operating system before the edit call returns. A killed process (SIGKILL, crash) loses
   nothing the kernel already has; no fsync per edit, so editing stays fast.
2. **Snapshot** — a background thread writes ``points.csv`` and ``labels.json`` atomically
   (temporary file + rename, old file kept as ``.bak``) once editing has paused for ``delay``
   seconds (at most ``max_wait`` seconds after the first unsaved edit), then drops the journal
   lines the snapshot contains.

Journal lines hold the *new* value of every point and the whole label list they change, so
replaying them in order over a snapshot that already includes some of them is harmless: a
crash between any two of the writes above restores the latest edit.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path

try:  # POSIX: one process at a time autosaves a sidecar
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from .annotations import Change, Label, Point, _next_colour, _State, points_table, table_points
from .errors import DustrackError
from .io.atomic import write_text_atomic
from .io.table import read_points_csv, write_points_csv
from .sidecar import JOURNAL, POINTS, read_labels, sidecar_dir, write_labels

log = logging.getLogger(__name__)
LOCK = "annotations.lock"

# The autosaver of each sidecar folder in this process: a new session on the same video
# closes the old one first, so two savers never overwrite each other's snapshots.
_ACTIVE: weakref.WeakValueDictionary[Path, Autosaver] = weakref.WeakValueDictionary()


def release(video: str | os.PathLike) -> None:
    """Close (after a final save) the autosaver of ``video`` in this process, if any."""
    saver = _ACTIVE.get(sidecar_dir(video).resolve())
    if saver is not None:
        saver.close()


# ---------------------------------------------------------------------------- journal lines
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
    """Journal entries in file order; a torn or garbled line (killed mid-write) is skipped."""
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
                int(entry["seq"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s: skipping unreadable journal line %d", path, number)
                continue
            entries.append(entry)
    return entries


def replay(state: _State, entries: list[dict]) -> _State:
    """Apply journal entries, in order, to ``state`` (in place; also returned)."""
    for entry in entries:
        if "labels" in entry:
            state.labels = [Label(str(name), str(colour)) for name, colour in entry["labels"]]
        for frame, label, x, y, source, confidence, reviewed in entry.get("set", ()):
            state.points[(int(frame), str(label))] = Point(
                float(x), float(y), str(source), float(confidence), bool(reviewed))
        for frame, label in entry.get("del", ()):
            state.points.pop((int(frame), str(label)), None)
        state.seq = max(state.seq, int(entry["seq"]))
    return state


def load_state(video: str | os.PathLike) -> _State:
    """The saved work of ``video``: snapshot plus journal (empty state if there is none)."""
    folder = sidecar_dir(video)
    state = _State()
    saved = read_labels(folder)
    if saved is not None:
        items, state.seq = saved
        used: set[str] = set()
        for item in items:
            colour = item["colour"] if item["colour"].startswith("#") else _next_colour(used)
            used.add(colour)
            state.labels.append(Label(item["name"], colour))
    if (folder / POINTS).is_file():
        state.points = table_points(read_points_csv(folder / POINTS))
    replay(state, read_journal(folder / JOURNAL))
    # Points of a label missing from the list (a hand-edited points.csv) keep their label.
    names = {lab.name for lab in state.labels}
    used = {lab.colour for lab in state.labels}
    for _, label in sorted(state.points):
        if label not in names:
            state.labels.append(Label(label, _next_colour(used)))
            used.add(state.labels[-1].colour)
            names.add(label)
    return state


# ---------------------------------------------------------------------------- the saver
class Autosaver:
    """Journals every edit of ``session`` and snapshots it to ``video``'s sidecar when idle.

    Parameters
    ----------
    session : AnnotationSession
    video : path-like
        The video; files go to ``<video>.dustrack/``.
    delay : float
        Seconds without edits before a snapshot is written.
    max_wait : float, optional
        Longest time an edit waits for a snapshot while editing goes on (default ``5 * delay``,
        at least 5 s).

    Attributes
    ----------
    error : Exception or None
        The last failure to write (e.g. a read-only folder); edits stay in memory.
    saved_seq : int
        Sequence number of the last edit in the newest snapshot.
    """

    def __init__(self, session, video, delay: float = 1.0, max_wait: float | None = None):
        self.session = session
        self.folder = sidecar_dir(video)
        self.journal_path = self.folder / JOURNAL
        self.delay = float(delay)
        self.max_wait = max(5.0 * self.delay, 5.0) if max_wait is None else float(max_wait)
        self.error: Exception | None = None
        self.saved_seq = session.seq
        self._journal = None
        self._journal_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending = self.journal_path.is_file()  # restored edits not yet in a snapshot
        self._first_pending = self._last_change = time.monotonic()
        self._stop = False
        self._lock_file = None
        self._closed = False
        self._take_lock()
        _ACTIVE[self.folder.resolve()] = self
        session.on_change.append(self._on_change)
        self._thread = threading.Thread(target=self._run, name="dustrack-autosave", daemon=True)
        self._thread.start()

    def _take_lock(self) -> None:
        """Refuse to autosave a sidecar that another process is autosaving."""
        if fcntl is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder / LOCK, "a+")  # noqa: SIM115 - held while the session lives
        except OSError as exc:  # read-only place: edits stay in memory, error shown
            self.error = DustrackError(f"cannot save annotations ({exc.strerror or exc})", self.folder)
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise DustrackError("these annotations are open in another program; close it first",
                                self.folder) from None
        self._lock_file = handle

    # called in the editing thread, right after each edit
    def _on_change(self, change: Change) -> None:
        line = encode_change(change) + "\n"
        try:
            with self._journal_lock:
                if self._journal is None:
                    self.folder.mkdir(parents=True, exist_ok=True)
                    self._journal = open(self.journal_path, "a", encoding="utf-8")  # noqa: SIM115
                self._journal.write(line)
                self._journal.flush()  # in the kernel now: survives the process being killed
        except OSError as exc:
            self.error = DustrackError(f"cannot save annotations ({exc.strerror or exc})", self.folder)
            log.error("%s", self.error)
        now = time.monotonic()
        with self._cond:
            if not self._pending:
                self._first_pending = now
            self._pending = True
            self._last_change = now
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._stop):
                    self._cond.wait()
                while not self._stop:  # debounce: wait for a pause in editing
                    now = time.monotonic()
                    quiet = self._last_change + self.delay - now
                    overdue = self._first_pending + self.max_wait - now
                    if quiet <= 0 or overdue <= 0:
                        break
                    self._cond.wait(min(quiet, overdue))
                if self._stop:
                    return
                self._pending = False
            try:
                self.save_now()
            except Exception as exc:  # noqa: BLE001 - keep running: the journal holds the edits
                self.error = exc
                log.error("autosave to %s failed: %s", self.folder, exc)

    def save_now(self) -> None:
        """Write a snapshot of the session now and drop the journal lines it contains."""
        with self._save_lock:
            points, labels, seq = self.session.snapshot()
            table = points_table(points, [lab.name for lab in labels])
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                write_points_csv(table, self.folder / POINTS)
                write_labels(self.folder, [{"name": lab.name, "colour": lab.colour} for lab in labels], seq)
                self._compact(seq)
            except OSError as exc:
                self.error = DustrackError(f"cannot save annotations ({exc.strerror or exc})", self.folder)
                raise self.error from None
            self.saved_seq = seq
            self.error = None

    def _compact(self, seq: int) -> None:
        with self._journal_lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if not self.journal_path.is_file():
                return
            keep = [encode_entry(e) for e in read_journal(self.journal_path) if int(e["seq"]) > seq]
            if keep:
                write_text_atomic(self.journal_path, "".join(keep), backup=False)
            else:
                self.journal_path.unlink()

    @property
    def dirty(self) -> bool:
        """Whether some edit is not in a snapshot yet (it is in the journal)."""
        return self.session.seq > self.saved_seq

    def flush(self) -> None:
        """Write a snapshot now if there are unsaved edits."""
        if self.dirty or self.journal_path.is_file():
            self.save_now()

    def close(self) -> None:
        """Stop the thread, write what is unsaved, stop listening to the session."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        try:
            self.flush()
        finally:
            with self._journal_lock:
                if self._journal is not None:
                    self._journal.close()
                    self._journal = None
            if self._on_change in self.session.on_change:
                self.session.on_change.remove(self._on_change)
            if self._lock_file is not None:
                self._lock_file.close()  # releases the lock
                self._lock_file = None
            if _ACTIVE.get(self.folder.resolve()) is self:
                del _ACTIVE[self.folder.resolve()]


def encode_entry(entry: dict) -> str:
    return json.dumps(entry, separators=(",", ":")) + "\n"
