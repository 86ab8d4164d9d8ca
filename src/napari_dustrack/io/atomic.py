"""Atomic file replacement with a backup of what is replaced.

Annotation files are the user's work: a crash mid-write must leave either the old or the new
file, never half of one, and replacing a file the user made keeps the old one as ``<name>.bak``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import DustrackOSError, from_os_error


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
    check_destination(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
        )
    except OSError as exc:
        raise from_os_error(exc, path) from None
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
    except OSError as exc:  # a full disc, a file that vanished...: one line naming the file
        raise from_os_error(exc, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    remove_stale_temps(path.parent, f".{path.name}.*.tmp{path.suffix}")


STALE_S = 3600.0  # a temporary file this old belongs to a write that was killed


def remove_stale_temps(folder: Path, pattern: str) -> None:
    """Delete temporary files matching ``pattern`` left by writes killed long ago."""
    now = time.time()
    for old in folder.glob(pattern):
        try:
            if now - old.stat().st_mtime > STALE_S:
                old.unlink()
        except OSError:
            pass  # another process is cleaning up too, or it is not ours to remove


def check_destination(
    path: str | os.PathLike, *, folder: bool = False, try_write: bool = False
) -> Path:
    """Refuse, before any work, a destination that cannot be written.

    Parameters
    ----------
    path : path-like
        The file (or, with ``folder``, the folder) to be written; missing parents are fine
        when the nearest existing one is a writable folder.
    folder : bool
        ``path`` is a folder to create or fill.
    try_write : bool
        Also create (and remove) a temporary file there: permissions alone do not tell about
        read-only mounts, special file systems or a full quota (used before long work).

    Raises
    ------
    DustrackError
        ``path`` is a folder where a file is expected (or the reverse), a parent is a file,
        or the nearest existing folder is not writable.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise DustrackOSError("exists and is not a folder", path)
    if not folder and path.is_dir():
        raise DustrackOSError("is a folder; give a file name", path)
    probe = path if folder else path.parent
    probe = probe.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DustrackOSError(f"cannot write there: {probe} is a file, not a folder", path)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DustrackOSError(f"cannot write there: no permission to write in {probe}", path)
    if try_write:
        try:
            with tempfile.TemporaryFile(dir=probe, prefix=".dustrack-write-test-"):
                pass
        except OSError as exc:
            raise DustrackOSError(
                f"cannot write in {probe} ({exc.strerror or exc})", path
            ) from None
    return path


def write_atomic(
    path: str | os.PathLike, write: Callable[[Path], None], backup: bool = True
) -> Path:
    """Call ``write(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path, backup=backup) as tmp:
        write(tmp)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, backup: bool = True) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"), backup=backup)
