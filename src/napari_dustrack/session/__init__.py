"""The user's annotations of one video: the edit model (:mod:`.model`) and its autosave to the
video's sidecar (:mod:`.autosave`), joined by :func:`open_session`.

The model knows nothing of files; the autosaver journals the model's changes and writes its
snapshots. :func:`open_session` is the one place that wires the two together.
"""

from __future__ import annotations

import os
from pathlib import Path

from .autosave import Autosaver, RecoveryWarning, load_state, release
from .model import AnnotationSession
from .records import Change, Label, Point
from .tables import lost_frames

__all__ = [
    "AnnotationSession",
    "Change",
    "Label",
    "Point",
    "RecoveryWarning",
    "lost_frames",
    "open_session",
]


def open_session(
    video: str | os.PathLike,
    n_frames: int | None = None,
    *,
    autosave: bool = True,
    delay: float = 1.0,
    max_wait: float | None = None,
) -> AnnotationSession:
    """The session of ``video``: restored from its sidecar if it has one, autosaving to it.

    Parameters
    ----------
    video : path-like
        The video file (or image folder); its sidecar is ``<video>.dustrack/``.
    n_frames : int, optional
        Length of the video.
    autosave : bool
        Journal every edit at once and write a snapshot ``delay`` seconds after editing stops.
    delay : float
        Debounce of the snapshot, in seconds.
    max_wait : float, optional
        Longest wait for a snapshot while editing goes on (see :class:`.autosave.Autosaver`).
    """
    release(video)  # an earlier session of this video in this process saves and stops
    session = AnnotationSession(n_frames)
    session.video = Path(video)
    state = load_state(video)
    session.recovered = state.recovered  # a damaged snapshot rebuilt: what, in words
    session.restore(state)
    if autosave:
        session.autosaver = Autosaver(session, video, delay=delay, max_wait=max_wait)
    return session
