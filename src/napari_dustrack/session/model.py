"""The annotation model: labels, points, edits with undo/redo, restore from the sidecar.

Pure Python (no Qt, no napari): the Annotate dock widget translates between this model and
napari layers; scripts and tests use it directly.

The point store holds at most one point per (frame, label). A missing entry means "not
labelled": nothing here shifts labels by position or invents a point. Every change goes
through one edit (:class:`Change`) that is recorded for undo/redo and announced to the
``on_change`` callbacks (the widget redraws, the autosaver journals it). Changes carry the
*new* value of every point they touch (absolute, not deltas), so replaying a journal over a
snapshot that already contains some of its edits gives the same state (see
:mod:`napari_dustrack.session.autosave`).

The records live in :mod:`.records`, the undo/redo stacks in :mod:`.history`, the larger
edits (flow results, predictions, imports) are worked out in :mod:`.edits` and committed by
the methods of :mod:`.bulk`, and conversions to tables and arrays are in :mod:`.tables`; this
class holds the store and commits edits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.colours import next_colour
from .bulk import BulkEdits
from .edits import (
    check_colour,
    check_new_name,
    checked_point,
    copy_changes,
    rename_changes,
)
from .history import History, make_edit
from .records import FLOW, MANUAL, Change, Key, Label, Point, State
from .tables import (
    keyframes,
    lost_frames,
    manual_array,
    next_missing,
    points_table,
    positions,
    table_points,
)

__all__ = [
    "FLOW",
    "MANUAL",
    "AnnotationSession",
    "Change",
    "Key",
    "Label",
    "Point",
    "State",
    "lost_frames",
    "points_table",
    "table_points",
]

log = logging.getLogger(__name__)


class AnnotationSession(BulkEdits):
    """Labels and points of one video, with undo/redo and change callbacks.

    Parameters
    ----------
    n_frames : int, optional
        Length of the video; edits outside ``0..n_frames-1`` are refused.
    labels : iterable of str, optional
        Labels to start with (default colours).

    Attributes
    ----------
    on_change : list of callable
        Called as ``callback(change)`` after every edit, undo and redo (in the editing thread).
    video : Path or None
        The video whose sidecar this session restores from and autosaves to.
    autosaver : Autosaver or None
    """

    def __init__(self, n_frames: int | None = None, labels: Iterable[str] = ()):
        self.n_frames = None if n_frames is None else int(n_frames)
        self._lock = threading.RLock()
        self._points: dict[Key, Point] = {}
        self._labels: list[Label] = []
        self._history = History()
        self._table_cache: pd.DataFrame | None = None
        self._keyframes_cache: dict[str | None, list[int]] = {}
        self.seq = 0
        self.on_change: list[Callable[[Change], None]] = []
        self.video: Path | None = None
        self.autosaver = None
        self.recovered: str | None = None  # set by open() when damaged saves were rebuilt
        for name in labels:
            self.add_label(name)
        self._history.forget()  # the starting labels are not an edit to undo

    # ------------------------------------------------------------------ persistence
    def restore(self, state: State) -> None:
        """Take the labels, points and sequence number of a saved ``state``."""
        with self._lock:
            self._labels = list(state.labels)
            self._points = dict(state.points)
            self.seq = state.seq

    def close(self) -> None:
        """Write any unsaved edits and stop autosaving."""
        if self.autosaver is not None:
            self.autosaver.close()
            self.autosaver = None

    def snapshot(self) -> tuple[dict[Key, Point], list[Label], int]:
        """A consistent copy of ``(points, labels, seq)`` (safe to call from another thread)."""
        with self._lock:
            return dict(self._points), list(self._labels), self.seq

    # ------------------------------------------------------------------ labels
    @property
    def labels(self) -> list[str]:
        """Label names in display order."""
        return [lab.name for lab in self._labels]

    @property
    def label_items(self) -> list[Label]:
        return list(self._labels)

    def colour(self, label: str) -> str:
        """The ``#rrggbb`` colour of ``label``."""
        return self._labels[self._label_index(label)].colour

    def add_label(self, name: str, colour: str | None = None) -> str:
        """Append a label; returns its (stripped) name."""
        name = check_new_name(name, self.labels)
        colour = (
            check_colour(colour) if colour else next_colour({lab.colour for lab in self._labels})
        )
        self._commit("add label", {}, tuple(self._labels) + (Label(name, colour),))
        return name

    def rename_label(self, old: str, new: str) -> str:
        """Rename a label; its points follow."""
        index = self._label_index(old)
        new = new.strip() if isinstance(new, str) else new
        if new == old:
            return old
        new = check_new_name(new, self.labels)
        labels = list(self._labels)
        labels[index] = Label(new, labels[index].colour)
        self._commit(
            f"rename {old} to {new}", rename_changes(self._points, old, new), tuple(labels)
        )
        return new

    def move_label(self, name: str, index: int) -> None:
        """Move ``name`` to position ``index`` of the label list."""
        labels = list(self._labels)
        item = labels.pop(self._label_index(name))
        labels.insert(max(0, min(int(index), len(labels))), item)
        self._commit(f"move {name}", {}, tuple(labels))

    def remove_label(self, name: str) -> None:
        """Remove a label and all its points (undoable)."""
        index = self._label_index(name)
        labels = tuple(lab for i, lab in enumerate(self._labels) if i != index)
        changes = {key: None for key in self._points if key[1] == name}
        self._commit(f"remove {name}", changes, labels)

    def set_colour(self, name: str, colour: str) -> None:
        labels = list(self._labels)
        index = self._label_index(name)
        labels[index] = Label(name, check_colour(colour))
        self._commit(f"colour {name}", {}, tuple(labels))

    # ------------------------------------------------------------------ points
    def point(self, frame: int, label: str) -> Point | None:
        return self._points.get((int(frame), label))

    def points_at(self, frame: int) -> dict[str, Point]:
        """``{label: Point}`` at ``frame``, in label order."""
        frame = int(frame)
        return {
            lab: self._points[(frame, lab)] for lab in self.labels if (frame, lab) in self._points
        }

    def __len__(self) -> int:
        """Number of points."""
        return len(self._points)

    def __bool__(self) -> bool:
        return True  # a session without points is still a session (``if session:``)

    def set_point(
        self,
        frame: int,
        label: str,
        x: float,
        y: float,
        source: str = MANUAL,
        confidence: float = 1.0,
        reviewed: bool = False,
        action: str = "place",
    ) -> Point:
        """Place ``label`` at ``(x, y)`` on ``frame``, or move it there if it is already on it."""
        frame = self._check_frame(frame)
        self._label_index(label)
        point = checked_point(label, x, y, source, confidence, reviewed)
        self._commit(f"{action} {label}", {(frame, label): point})
        return point

    def move_point(self, frame: int, label: str, x: float, y: float) -> Point:
        """Move an existing point; the user moved it, so it becomes manual."""
        if self.point(frame, label) is None:
            raise DustrackError(f"no point {label!r} on frame {frame} to move")
        return self.set_point(frame, label, x, y, action="move")

    def place_points(
        self, items: Iterable[tuple[int, str, float, float]], action: str = "move"
    ) -> int:
        """Place several manual points ``(frame, label, x, y)`` in one edit (e.g. a group drag)."""
        changes: dict[Key, Point | None] = {}
        for frame, label, x, y in items:
            frame = self._check_frame(frame)
            self._label_index(label)
            changes[(frame, label)] = checked_point(label, x, y)
        self._commit(action, changes)
        return len(changes)

    def delete_point(self, frame: int, label: str) -> bool:
        """Remove the point of ``label`` on ``frame``; False if there was none."""
        return self._commit(f"delete {label}", {(int(frame), label): None}) is not None

    def delete_points(self, keys: Iterable[Key], action: str = "delete") -> int:
        """Remove several points in one edit; returns how many there were."""
        changes = {(int(f), lab): None for f, lab in keys if (int(f), lab) in self._points}
        self._commit(action, changes)
        return len(changes)

    def copy_previous(self, frame: int, labels: Sequence[str] | None = None) -> int:
        """Copy the points of ``frame - 1`` onto ``frame`` as manual points.

        Labels already placed by hand on ``frame`` are kept; returns how many were copied.
        """
        frame = self._check_frame(frame)
        if frame == 0:
            return 0
        wanted = self.labels if labels is None else labels
        changes = copy_changes(self._points, frame, self.labels, wanted)
        self._commit("copy previous frame", changes)
        return len(changes)

    # ------------------------------------------------------------------ queries
    def keyframes(self, label: str | None = None) -> list[int]:
        """Frames with a manual point (of ``label``, or of any label), sorted."""
        with self._lock:
            if label not in self._keyframes_cache:
                self._keyframes_cache[label] = keyframes(self._points, label)
            return list(self._keyframes_cache[label])

    def previous_keyframe(self, frame: int, label: str | None = None) -> int | None:
        before = [f for f in self.keyframes(label) if f < frame]
        return before[-1] if before else None

    def next_keyframe(self, frame: int, label: str | None = None) -> int | None:
        after = [f for f in self.keyframes(label) if f > frame]
        return after[0] if after else None

    def next_missing(
        self, frame: int, labels: Sequence[str] | None = None, wrap: bool = True
    ) -> int | None:
        """The first frame after ``frame`` where one of ``labels`` has no point (None if none).

        Searches to the end of the video, then (``wrap``) from frame 0.
        """
        labels = self.labels if labels is None else list(labels)
        if not labels or self.n_frames is None:
            return None
        return next_missing(self._points, labels, self.n_frames, frame, wrap=wrap)

    def positions(self, frame: int, labels: Sequence[str] | None = None) -> np.ndarray:
        """(L, 2) of (x, y) on ``frame``; NaN where a label has no point."""
        return positions(self._points, frame, self.labels if labels is None else list(labels))

    def keys_array(self, labels: Sequence[str] | None = None) -> np.ndarray:
        """(n_frames, L, 2) of the manual points (keyframes), NaN elsewhere."""
        if self.n_frames is None:
            raise DustrackError("the session does not know the length of the video")
        labels = self.labels if labels is None else list(labels)
        return manual_array(self._points, labels, self.n_frames)

    def table(self) -> pd.DataFrame:
        """The point table (frame, then label order)."""
        with self._lock:
            if self._table_cache is None:
                self._table_cache = points_table(self._points, self.labels)
            return self._table_cache.copy()

    # ------------------------------------------------------------------ undo / redo
    @property
    def can_undo(self) -> bool:
        return self._history.can_undo

    @property
    def can_redo(self) -> bool:
        return self._history.can_redo

    @property
    def undo_action(self) -> str | None:
        return self._history.undo_action

    @property
    def redo_action(self) -> str | None:
        return self._history.redo_action

    def undo(self) -> Change | None:
        """Revert the last edit; None if there is nothing to undo."""
        edit = self._history.undo()
        if edit is None:
            return None
        return self._apply(f"undo {edit.action}", edit.before, edit.labels_before)

    def redo(self) -> Change | None:
        """Make the last undone edit again; None if there is nothing to redo."""
        edit = self._history.redo()
        if edit is None:
            return None
        return self._apply(f"redo {edit.action}", edit.after, edit.labels_after)

    # ------------------------------------------------------------------ internals
    def _commit(
        self,
        action: str,
        changes: Mapping[Key, Point | None],
        labels: tuple[Label, ...] | None = None,
    ) -> Change | None:
        """Record and apply one edit (nothing happens if it changes nothing)."""
        with self._lock:
            edit = make_edit(action, self._points, tuple(self._labels), changes, labels)
            if edit is None:
                return None
            self._history.record(edit)
        return self._apply(action, edit.after, edit.labels_after)

    def _apply(self, action: str, points: Mapping[Key, Point | None], labels) -> Change:
        with self._lock:
            for key, new in points.items():
                if new is None:
                    self._points.pop(key, None)
                else:
                    self._points[key] = new
            if labels is not None:
                self._labels = list(labels)
            self._table_cache = None
            self._keyframes_cache = {}
            self.seq += 1
            change = Change(
                action, dict(points), None if labels is None else tuple(labels), self.seq
            )
        for callback in list(self.on_change):
            try:
                callback(change)
            except Exception:  # a broken listener must not lose the edit for the others
                log.exception("annotation change listener %r failed", callback)
        return change

    def _label_index(self, name: str) -> int:
        for i, lab in enumerate(self._labels):
            if lab.name == name:
                return i
        raise DustrackError(f"unknown label {name!r}; labels are {self.labels}")

    def _in_video(self, frame: int) -> bool:
        return frame >= 0 and (self.n_frames is None or frame < self.n_frames)

    def _check_frame(self, frame) -> int:
        frame = int(frame)
        if not self._in_video(frame):
            raise DustrackError(f"frame {frame} is outside the video ({self.n_frames} frames)")
        return frame
