"""The records of an annotation session: a labelled point, a label, one announced change, and
the state restored from a sidecar. Frozen values, shared by the model, its tables and the
autosave."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..io.sources import PointSource

Key = tuple[int, str]  # (frame, label)

MANUAL = PointSource.MANUAL
FLOW = PointSource.FLOW


@dataclass(frozen=True)
class Point:
    """One labelled position: ``x`` column, ``y`` row (pixels), where it came from."""

    x: float
    y: float
    source: str = MANUAL
    confidence: float = 1.0
    reviewed: bool = False

    @property
    def manual(self) -> bool:
        return self.source == MANUAL

    @property
    def protected(self) -> bool:
        """Made or accepted by the user: optical flow never overwrites it."""
        return self.source == MANUAL or self.reviewed


@dataclass(frozen=True)
class Label:
    name: str
    colour: str


@dataclass(frozen=True)
class Change:
    """What one edit (or its undo/redo) changed.

    Attributes
    ----------
    action : str
        What the user did (``place``, ``fill``, ``undo place``...).
    points : mapping
        New value of every point touched: a :class:`Point`, or None where it was removed.
    labels : tuple of Label or None
        The whole label list after the change, when it changed.
    seq : int
        Sequence number of the edit (increasing within a session, continued after restore).
    """

    action: str
    points: Mapping[Key, Point | None]
    labels: tuple[Label, ...] | None
    seq: int

    @property
    def frames(self) -> set[int]:
        return {frame for frame, _ in self.points}


@dataclass
class State:
    """What a session holds, as restored from a sidecar."""

    labels: list[Label] = field(default_factory=list)
    points: dict[Key, Point] = field(default_factory=dict)
    seq: int = 0
