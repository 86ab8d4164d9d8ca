"""The one exception users see: a single line naming the file and the problem."""

from __future__ import annotations

import os


class DustrackError(Exception):
    """A user-facing error whose message is one line: ``<file>: <problem>``."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        problem = " ".join(str(problem).split())  # one line, always
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self):  # keeps the path when sent back from a dask worker
        return (type(self), (self.problem, self.path))


class Cancelled(Exception):
    """Raised inside long work when the user pressed Cancel; carries what was done so far."""

    def __init__(self, partial=None):
        super().__init__("cancelled")
        self.partial = partial
