"""Progress of long CLI work on stderr."""

from __future__ import annotations

import sys
from typing import Callable


def terminal_progress(verb: str) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` that prints ``<verb> NN%`` every 10% when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct >= last[0] + 10 or done == total:
            last[0] = pct
            print(f"\r{verb} {pct:3d}%", end="\n" if done == total else "", file=sys.stderr)

    return progress
