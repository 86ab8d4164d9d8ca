"""The big edits of an annotation session: optical-flow results, accepted ranges, accepted
predictions and imported tables, each worked out in :mod:`.edits` and committed as one edit
(one undo step).

A part of :class:`~napari_dustrack.session.model.AnnotationSession` (a mixin: it uses the
session's store, lock and ``_commit``); pure Python, no Qt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.table import validate
from .edits import accept_changes, flow_changes, import_changes, prediction_changes, unprotected
from .history import make_edit
from .records import Key, Point


class BulkEdits:
    """Part of :class:`~napari_dustrack.session.model.AnnotationSession`: the big edits."""

    # (changes, seq, edit, count) worked out by prediction_changes for commit_predictions
    _prepared: tuple | None = None

    def apply_flow(
        self,
        xy: np.ndarray,
        labels: Sequence[str],
        frames: Sequence[int] | None = None,
        confidence: np.ndarray | None = None,
        action: str = "fill",
        keep_reviewed: bool = True,
    ) -> int:
        """Store optical-flow positions as ``flow`` points, in one edit.

        Parameters
        ----------
        xy : array (n, L, 2)
            Positions (x, y); NaN where flow has none (left as it is).
        labels : sequence of str
            The L labels of the columns of ``xy``.
        frames : sequence of int, optional
            The frame of each of the n rows (default ``0..n-1``).
        confidence : array (n, L), optional
        keep_reviewed : bool
            Leave accepted (reviewed) points as they are; manual points are never overwritten.

        Returns
        -------
        int
            Number of points written.
        """
        changes = flow_changes(
            self._points,
            xy,
            labels,
            frames,
            confidence,
            known=set(self.labels),
            in_video=self._in_video,
            keep_reviewed=keep_reviewed,
        )
        self._commit(action, changes)
        return len(changes)

    def accept(self, start: int, end: int, labels: Sequence[str] | None = None) -> int:
        """Mark the non-manual points on frames ``start..end`` (inclusive) as reviewed."""
        lo, hi = sorted((int(start), int(end)))
        wanted = self.labels if labels is None else labels
        changes = accept_changes(self._points, lo, hi, wanted)
        self._commit(f"accept frames {lo}-{hi}", changes)
        return len(changes)

    def accept_predictions(
        self,
        table: pd.DataFrame,
        *,
        start: int | None = None,
        end: int | None = None,
        min_confidence: float = 0.0,
        action: str | None = None,
    ) -> int:
        """Copy predicted points (model or smoothed) into the annotations as reviewed points.

        Parameters
        ----------
        table : DataFrame
            Point table of the predictions (``source`` model or smoothed, ``confidence``).
        start, end : int, optional
            Inclusive frame range (default: every frame of ``table``).
        min_confidence : float
            Only predictions at least this confident are taken.
        action : str, optional
            Name of the edit (for undo); default ``accept predictions on frames a-b``.

        Returns
        -------
        int
            Points written; manual and already reviewed points are kept as they are.

        Raises
        ------
        DustrackError
            The predictions have labels the annotations do not, or none lie in the range.
        """
        changes, lo, hi = self.prediction_changes(
            table, start=start, end=end, min_confidence=min_confidence
        )
        return self.commit_predictions(changes, action or f"accept predictions on frames {lo}-{hi}")

    def prediction_changes(
        self,
        table: pd.DataFrame,
        *,
        start: int | None = None,
        end: int | None = None,
        min_confidence: float = 0.0,
    ) -> tuple[dict[Key, Point], int, int]:
        """The points :meth:`accept_predictions` would write, and its frame range; changes
        nothing, so it may run in a worker thread (see :meth:`commit_predictions`)."""
        table = validate(table)
        with self._lock:
            points, seq = dict(self._points), self.seq
        changes, lo, hi = prediction_changes(
            points, table, self.labels, start=start, end=end, min_confidence=min_confidence
        )
        # The edit itself is worked out here too (for 80,000 points a few tenths of a second
        # the GUI thread would otherwise spend in commit_predictions); it is used as it is
        # when nothing was edited in between.
        keep = unprotected(points, changes)
        self._prepared = (changes, seq, make_edit("", points, (), keep), len(keep))
        return changes, lo, hi

    def commit_predictions(self, changes: Mapping[Key, Point], action: str) -> int:
        """Write points from :meth:`prediction_changes` as one edit; points made manual or
        reviewed since then are kept. Returns how many were written."""
        prepared, self._prepared = self._prepared, None
        edit = None
        with self._lock:
            fresh = prepared is not None and prepared[0] is changes and prepared[1] == self.seq
            if fresh and prepared[2] is not None:
                edit = prepared[2]
                edit.action = action
                self._history.record(edit)
        if fresh:
            if edit is not None:
                self._apply(action, edit.after, None)
            return prepared[3]
        keep = unprotected(self._points, changes)
        self._commit(action, keep)
        return len(keep)

    def import_table(self, table: pd.DataFrame, path: str | os.PathLike | None = None) -> int:
        """Add the rows of a point table (its labels too), replacing points it also has."""
        table = validate(table, path)
        if self.n_frames is not None and len(table) and int(table["frame"].max()) >= self.n_frames:
            raise DustrackError(
                f"frame {int(table['frame'].max())} is outside the video ({self.n_frames} frames)",
                path,
            )
        labels, changes = import_changes(table, self._labels)
        name = Path(path).name if path is not None else "table"
        self._commit(f"import {name}", changes, tuple(labels))
        return len(changes)

    def import_file(self, path: str | os.PathLike) -> int:
        """Import a native CSV, DeepLabCut CollectedData (CSV/H5) or DUSTrack JSON file."""
        from ..io.points_io import read_points

        return self.import_table(read_points(path), path)
