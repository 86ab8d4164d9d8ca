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

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}" if self.path else self.problem

    def __reduce__(self):  # keeps the path when sent back from a dask worker
        return (type(self), (self.problem, self.path))


class Cancelled(Exception):
    """Raised inside long work when the user pressed Cancel; carries what was done so far."""

    def __init__(self, partial=None):
        super().__init__("cancelled")
        self.partial = partial


def raise_if_cancelled(cancel, partial=None) -> None:
    """Raise :class:`Cancelled` (carrying ``partial``) once the event ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled(partial)


class DustrackOSError(DustrackError, OSError):
    """A :class:`DustrackError` for a file that cannot be written or read; still an ``OSError``
    so that code catching ``OSError`` (e.g. "read-only disc: keep working") goes on working."""

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        super().__init__(problem, path)
        self.strerror, self.filename = self.problem, self.path


def from_os_error(exc: OSError, path: str | os.PathLike | None = None) -> DustrackError:
    """The one-line error for an operating-system failure: the file it names, what went wrong."""
    if isinstance(exc, DustrackError):
        return exc
    where = exc.filename if getattr(exc, "filename", None) is not None else path
    return DustrackOSError(exc.strerror or str(exc) or type(exc).__name__, where)


def user_message(exc: BaseException) -> str | None:
    """The one-line message a user sees for ``exc``, or None when it is a bug (not their input).

    The CLI and the widgets share it: a :class:`DustrackError` as it is, an ``OSError``
    (unwritable folder, full disc, a folder where a file was expected) as ``<file>: <problem>``.
    """
    if isinstance(exc, DustrackError):
        return str(exc)
    if isinstance(exc, OSError):
        return str(from_os_error(exc))
    return None
