"""Undo and redo of a session's edits: two bounded stacks of what each edit changed, before
and after (absolute values, so undoing is applying the ``before`` side)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .records import Key, Label, Point

UNDO_LIMIT = 500


@dataclass
class Edit:
    """One recorded edit: the points (and the label list) it touched, before and after."""

    action: str
    before: dict[Key, Point | None]
    after: dict[Key, Point | None]
    labels_before: tuple[Label, ...] | None = None
    labels_after: tuple[Label, ...] | None = None


class History:
    """The undo and redo stacks (at most :data:`UNDO_LIMIT` edits kept for undo)."""

    def __init__(self):
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_action(self) -> str | None:
        return self._undo[-1].action if self._undo else None

    @property
    def redo_action(self) -> str | None:
        return self._redo[-1].action if self._redo else None

    def record(self, edit: Edit) -> None:
        """A new edit: it can be undone, and what was undone before can no longer be redone."""
        self._undo.append(edit)
        del self._undo[:-UNDO_LIMIT]
        self._redo.clear()

    def forget(self) -> None:
        """Nothing to undo (e.g. the labels a session starts with)."""
        self._undo.clear()

    def undo(self) -> Edit | None:
        """The edit to revert (moved to the redo stack), or None."""
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._redo.append(edit)
        return edit

    def redo(self) -> Edit | None:
        """The edit to make again (moved back to the undo stack), or None."""
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._undo.append(edit)
        return edit


def make_edit(
    action: str,
    points: Mapping[Key, Point],
    labels_now: tuple[Label, ...],
    changes: Mapping[Key, Point | None],
    labels: tuple[Label, ...] | None = None,
) -> Edit | None:
    """The edit that ``changes`` (and the new label list ``labels``) make to ``points`` and
    ``labels_now``, keeping only what differs; None if it changes nothing."""
    before = {key: points.get(key) for key in changes}
    after = {key: new for key, new in changes.items() if before[key] != new}
    before = {key: before[key] for key in after}
    if labels is not None and tuple(labels) == labels_now:
        labels = None
    if not after and labels is None:
        return None
    return Edit(action, before, after, None if labels is None else labels_now, labels)
