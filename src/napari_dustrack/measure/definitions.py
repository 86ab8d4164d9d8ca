"""Measure definitions: small dataclasses saved as ``measures.json`` next to the points.

A definition names labels, not positions, so one set of definitions is recomputed from any
point table of the video (manual, flow, model, smoothed).

``measures.json``::

    {"version": 1,
     "measures": [{"name": "wall", "kind": "distance", "labels": ["endo", "epi"],
                   "change": "none", "reference_frame": null, "strain": "engineering"}]}
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DustrackError
from ..io.atomic import write_text_atomic
from ..io.sidecar import measures_path as sidecar_measures_path  # noqa: F401 (re-exported)

VERSION = 1

#: kind -> (minimum, maximum) number of labels (None: no maximum), and what the labels mean.
KINDS: dict[str, tuple[int, int | None, str]] = {
    "distance": (2, 2, "two points (e.g. endocardium, epicardium: wall thickness)"),
    "area": (3, None, "polygon vertices in order (e.g. around a chamber)"),
    "angle": (3, 4, "a, b, c: angle at b; or a, b, c, d: angle between segments ab and cd"),
    "velocity": (1, 1, "one point"),
    "deformation": (3, None, "three or more points of a tissue region (affine fit)"),
    "architecture": (6, 6, "fascicle a, b, superficial aponeurosis a, b, deep aponeurosis a, b"),
}
CHANGES = ("none", "delta", "relative")
STRAINS = ("engineering", "green-lagrange")


@dataclass
class Measure:
    """One measure over time.

    Parameters
    ----------
    name : str
        Column prefix in the results, e.g. ``wall thickness``.
    kind : str
        One of :data:`KINDS`.
    labels : list of str
        Point labels, in the order :data:`KINDS` describes.
    change : str
        ``none`` (the value), ``delta`` (value minus its value at the reference frame) or
        ``relative`` (value / reference value - 1; for a distance this is the strain L/L0 - 1).
        Ignored by ``velocity`` and ``deformation`` (which is always relative to its reference).
    reference_frame : int or None
        Frame of the reference configuration; None picks the first frame where all the
        measure's labels are present.
    strain : str
        For ``deformation``: ``engineering`` (stretch - 1, Biot) or ``green-lagrange``
        ((stretch^2 - 1) / 2).
    """

    name: str
    kind: str
    labels: list[str] = field(default_factory=list)
    change: str = "none"
    reference_frame: int | None = None
    strain: str = "engineering"

    def __post_init__(self):
        self.name = str(self.name)
        self.labels = [str(lab) for lab in self.labels]
        self.check()

    def check(self, path: str | os.PathLike | None = None) -> Measure:
        """Raise :class:`DustrackError` if the definition is inconsistent."""
        where = f"measure {self.name!r}: "
        if not str(self.name).strip():
            raise DustrackError("a measure needs a name", path)
        if self.kind not in KINDS:
            raise DustrackError(
                f"{where}unknown kind {self.kind!r}; expected one of {list(KINDS)}", path
            )
        lo, hi, meaning = KINDS[self.kind]
        n = len(self.labels)
        if n < lo or (hi is not None and n > hi):
            count = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
            raise DustrackError(
                f"{where}{self.kind} needs {count} labels ({meaning}), got {n}", path
            )
        if len(set(self.labels)) != n:
            raise DustrackError(f"{where}a label is repeated in {self.labels}", path)
        if self.change not in CHANGES:
            raise DustrackError(
                f"{where}change must be one of {list(CHANGES)}, got {self.change!r}", path
            )
        if self.strain not in STRAINS:
            raise DustrackError(
                f"{where}strain must be one of {list(STRAINS)}, got {self.strain!r}", path
            )
        if self.reference_frame is not None:
            if (
                isinstance(self.reference_frame, bool)
                or int(self.reference_frame) != self.reference_frame
                or self.reference_frame < 0
            ):
                raise DustrackError(f"{where}reference_frame must be a frame number >= 0", path)
            self.reference_frame = int(self.reference_frame)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, path: str | os.PathLike | None = None) -> Measure:
        if not isinstance(data, dict):
            raise DustrackError(f"a measure must be a JSON object, got {type(data).__name__}", path)
        known = {"name", "kind", "labels", "change", "reference_frame", "strain"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DustrackError(f"measure {data.get('name')!r}: unknown field(s) {unknown}", path)
        missing = [k for k in ("name", "kind", "labels") if k not in data]
        if missing:
            raise DustrackError(f"measure {data.get('name')!r}: missing field(s) {missing}", path)
        if not isinstance(data["labels"], list):
            raise DustrackError(f"measure {data['name']!r}: labels must be a list", path)
        try:
            return cls(**data)
        except DustrackError as exc:
            raise DustrackError(exc.problem, path) from None
        except (TypeError, ValueError) as exc:
            raise DustrackError(f"measure {data.get('name')!r}: {exc}", path) from None


def measures_to_json(measures: Iterable[Measure]) -> str:
    measures = list(measures)
    _check_unique(measures)
    return json.dumps({"version": VERSION, "measures": [m.to_dict() for m in measures]}, indent=2)


def measures_from_json(text: str, path: str | os.PathLike | None = None) -> list[Measure]:
    """Parse ``measures.json`` content (an object with ``measures``, or a bare list)."""
    try:
        content = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DustrackError(f"malformed JSON ({exc})", path) from None
    if isinstance(content, dict):
        version = content.get("version", VERSION)
        if version != VERSION:
            raise DustrackError(
                f"unsupported measures file version {version!r} (expected {VERSION})", path
            )
        content = content.get("measures")
    if not isinstance(content, list):
        raise DustrackError('expected {"measures": [...]} or a list of measures', path)
    measures = [Measure.from_dict(item, path) for item in content]
    _check_unique(measures, path)
    return measures


def _check_unique(measures: list[Measure], path=None) -> None:
    names = [m.name for m in measures]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DustrackError(f"measure names must be unique; repeated: {dup}", path)


def load_measures(path: str | os.PathLike) -> list[Measure]:
    """Read a measures JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DustrackError("file not found", path) from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise DustrackError(f"cannot read measures ({type(exc).__name__})", path) from None
    return measures_from_json(text, path)


def save_measures(measures: Iterable[Measure], path: str | os.PathLike) -> Path:
    """Write measures atomically (the previous file kept as ``.bak``)."""
    return write_text_atomic(path, measures_to_json(measures))
