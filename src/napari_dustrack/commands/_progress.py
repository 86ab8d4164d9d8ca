"""Progress of long CLI work on stderr: one printer for every command.

On a terminal the line is rewritten in place (``\\r``) and ends with a newline when the work is
done; on a pipe or a log file whole lines are written, at most every ``piped_every_s`` seconds,
so that a log is not flooded.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class TerminalProgress:
    """One progress line on ``stream`` (default stderr).

    Parameters
    ----------
    stream : file, optional
    every_s : float
        On a terminal, the line is rewritten at most this often (the last one always shows).
    piped_every_s : float
        The same for a stream that is not a terminal.
    in_place : bool, optional
        Rewrite the line with ``\\r`` (default: when ``stream`` is a terminal).
    """

    def __init__(
        self,
        stream=None,
        *,
        every_s: float = 0.5,
        piped_every_s: float = 10.0,
        in_place: bool | None = None,
    ):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.in_place = self.tty if in_place is None else in_place
        self.every_s = every_s if self.tty else piped_every_s
        self.last = 0.0
        self.t0 = time.monotonic()

    def due(self, final: bool) -> bool:
        """Whether a line is to be shown now (the final one always is)."""
        now = time.monotonic()
        if not final and now - self.last < self.every_s:
            return False
        self.last = now
        return True

    def show(self, line: str, *, final: bool = False) -> None:
        if self.in_place:
            print("\r" + line, end="\n" if final else "", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)


def terminal_progress(verb: str) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` printing ``<verb> NN%`` every 10% when stderr is a terminal."""
    out = TerminalProgress()
    if not out.tty:
        return None
    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct >= last[0] + 10 or done == total:
            last[0] = pct
            out.show(f"{verb} {pct:3d}%", final=done == total)

    return progress


def frames_progress() -> Callable[[dict], None]:
    """An ``on_message`` for a worker job (:meth:`Job.wait`): ``done/total frames`` in place."""
    out = TerminalProgress(every_s=0.0, piped_every_s=0.0, in_place=True)

    def show(msg: dict) -> None:
        if msg.get("kind") == "progress" and msg["total"]:
            out.show(f"  {msg['done']}/{msg['total']} frames")

    return show


class BatchProgress(TerminalProgress):
    """``progress(tasks_done, tasks_total, videos_done, videos_total)`` for :func:`run_batch`:
    a bar on a terminal, sparse lines otherwise."""

    def __call__(self, tasks_done: int, tasks_total: int, videos_done: int, videos_total: int):
        final = videos_done == videos_total
        if not self.due(final):
            return
        frac = tasks_done / max(tasks_total, 1)
        bar = "#" * int(24 * frac) + "-" * (24 - int(24 * frac))
        self.show(
            f"[{bar}] tasks {tasks_done}/{tasks_total}  videos {videos_done}/{videos_total}"
            f"  {self.last - self.t0:6.0f} s",
            final=final,
        )
