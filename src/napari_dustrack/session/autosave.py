"""Autosave of an :class:`~napari_dustrack.session.AnnotationSession` to the video's sidecar.

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

3. **Recovery** — each snapshot keeps the one before it (``points.csv.bak``,
   ``labels.json.bak``) and the journal lines between the two (``journal.jsonl.bak``). If a
   snapshot file is damaged (a disc error, a hand edit), opening the video rebuilds the work
   from the previous snapshot plus both journals, keeps the damaged file aside as
   ``<name>.corrupt-<time>`` (never deleted) and says so (a :class:`RecoveryWarning`, which
   napari shows as a notification, and ``AnnotationSession.recovered``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
import warnings
import weakref
from pathlib import Path

try:  # POSIX: one process at a time autosaves a sidecar
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from ..errors import DustrackError
from ..io.atomic import write_text_atomic
from ..io.colours import next_colour
from ..io.sidecar import JOURNAL, LABELS, POINTS, read_labels, sidecar_dir, write_labels
from ..io.table import SOURCES, read_points_csv, write_points_csv
from .records import Change, Label, Point, State
from .tables import points_table, table_points

log = logging.getLogger(__name__)
LOCK = "annotations.lock"
BAK = ".bak"


class RecoveryWarning(UserWarning):
    """Saved annotations were damaged and rebuilt from the backup and the journal."""


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


def load_state(video: str | os.PathLike) -> State:
    """The saved work of ``video``: snapshot plus journal (empty state if there is none).

    A damaged snapshot file is rebuilt from the previous snapshot and the journals (see the
    module notes); the state then has ``recovered``, the message for the user.
    """
    folder = sidecar_dir(video)
    state = State()
    state.recovered = None
    damaged: list[tuple[Path, DustrackError]] = []
    saved = _read_or_none(folder / LABELS, _read_labels, damaged)
    labels_bad = bool(damaged)
    table = _read_or_none(folder / POINTS, read_points_csv, damaged)
    entries = read_journal(folder / JOURNAL)
    if damaged:
        backups: list = []
        if labels_bad:
            saved = _read_or_none(folder / (LABELS + BAK), _read_labels, backups)
        if table is None:
            table = _read_or_none(folder / (POINTS + BAK), read_points_csv, backups)
        entries = read_journal(folder / (JOURNAL + BAK)) + entries
        if saved is None and table is None and not entries:
            raise damaged[0][1]  # nothing to rebuild from: say so, touch nothing
    if saved is not None:
        items, state.seq = saved
        used: set[str] = set()
        for item in items:
            colour = item["colour"] if item["colour"].startswith("#") else next_colour(used)
            used.add(colour)
            state.labels.append(Label(item["name"], colour))
    if table is not None:
        state.points = table_points(table)
    replay(state, entries)
    # Points of a label missing from the list (a hand-edited points.csv) keep their label.
    names = {lab.name for lab in state.labels}
    used = {lab.colour for lab in state.labels}
    for _, label in sorted(state.points):
        if label not in names:
            state.labels.append(Label(label, next_colour(used)))
            used.add(state.labels[-1].colour)
            names.add(label)
    if damaged:
        state.recovered = _set_aside(damaged, state, len(entries))
    return state


def _read_labels(path: Path):
    return read_labels(path.parent, path.name)


def _read_or_none(path: Path, read, damaged: list):
    """``read(path)``; None when the file is missing, or damaged (then noted in ``damaged``)."""
    if not path.is_file():
        return None
    try:
        return read(path)
    except DustrackError as exc:
        damaged.append((path, exc))
        return None


def _set_aside(damaged: list[tuple[Path, DustrackError]], state: State, n_edits: int) -> str:
    """Rename the damaged files (never delete) and return what was recovered, in words."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = []
    for path, _ in damaged:
        if path.name.endswith(BAK):
            continue  # a damaged backup stays where it is; the newer file was damaged too
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            os.replace(path, aside)
            kept.append(aside.name)
        except OSError:
            kept.append(f"{path.name} (could not be renamed)")
    problems = "; ".join(exc.problem for _, exc in damaged)
    message = (
        f"saved annotations were damaged ({problems}); recovered {len(state.points)} "
        f"point(s) of {len(state.labels)} label(s) from the backup and {n_edits} journal "
        f"edit(s); the damaged file(s) kept as {', '.join(kept) or 'they were'}"
    )
    log.warning("%s: %s", damaged[0][0].parent, message)
    warnings.warn(str(DustrackError(message, damaged[0][0].parent)), RecoveryWarning, stacklevel=3)
    return message


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
            self.error = DustrackError(
                f"cannot save annotations ({exc.strerror or exc})", self.folder
            )
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise DustrackError(
                "these annotations are open in another program; close it first", self.folder
            ) from None
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
            self.error = DustrackError(
                f"cannot save annotations ({exc.strerror or exc})", self.folder
            )
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
                write_labels(
                    self.folder, [{"name": lab.name, "colour": lab.colour} for lab in labels], seq
                )
                self._compact(seq)
            except OSError as exc:
                self.error = DustrackError(
                    f"cannot save annotations ({exc.strerror or exc})", self.folder
                )
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
            entries = read_journal(self.journal_path)
            keep = [encode_entry(e) for e in entries if int(e["seq"]) > seq]
            # the edits between the previous snapshot (the .bak files) and this one: recovery
            done = [encode_entry(e) for e in entries if int(e["seq"]) <= seq]
            write_text_atomic(
                self.journal_path.with_name(JOURNAL + BAK), "".join(done), backup=False
            )
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
