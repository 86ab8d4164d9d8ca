"""Atomic file replacement with a backup of what is replaced.

Annotation files are the user's work: a crash mid-write must leave either the old or the new
file, never half of one, and replacing a file the user made keeps the old one as ``<name>.bak``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, backup: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    Parameters
    ----------
    path : path-like
        Final destination.
    backup : bool
        If ``path`` exists, copy it to ``<path>.bak`` before it is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp
        with open(tmp, "rb+") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        if backup and path.exists():
            shutil.copy2(path, path.with_name(path.name + ".bak"))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], backup: bool = True) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path, backup=backup) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, backup: bool = True) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"), backup=backup)
