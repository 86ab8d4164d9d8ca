"""Autosave of an :class:`~napari_dustrack.session.AnnotationSession` to the video's sidecar.

Two layers make "nothing lost" hold even when the process is killed right after an edit:

1. **Journal** — every edit is appended to ``journal.jsonl`` as one JSON line and flushed to
   the operating system before the edit call returns (an edit of thousands of points, by the
   journal's thread a moment later: :mod:`.journal`). A killed process (SIGKILL, crash) loses
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

import logging
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
from ..io.table import read_points_csv, write_points_csv
from .journal import JournalWriter, encode_change, encode_entry, read_journal, replay
from .records import Change, Label, State
from .tables import points_table, table_points

__all__ = [
    "Autosaver",
    "RecoveryWarning",
    "encode_change",
    "load_state",
    "read_journal",
    "release",
    "replay",
]

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
        self.journal = JournalWriter(self.journal_path, self._journal_failed)
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
        self.journal.append(change)
        now = time.monotonic()
        with self._cond:
            if not self._pending:
                self._first_pending = now
            self._pending = True
            self._last_change = now
            self._cond.notify()

    def _journal_failed(self, exc: OSError) -> None:
        self.error = DustrackError(f"cannot save annotations ({exc.strerror or exc})", self.folder)
        log.error("%s", self.error)

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
        self.journal.drain()  # the lines of edits up to ``seq`` are all in the file now
        with self.journal.lock:
            self.journal.close_file()
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
            self.journal.close()
            if self._on_change in self.session.on_change:
                self.session.on_change.remove(self._on_change)
            if self._lock_file is not None:
                self._lock_file.close()  # releases the lock
                self._lock_file = None
            if _ACTIVE.get(self.folder.resolve()) is self:
                del _ACTIVE[self.folder.resolve()]
