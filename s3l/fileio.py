"""Atomic file writing and overwrite protection shared by every stage."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from s3l.errors import S3LError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it (Linux ``/proc/self/status``); elsewhere set and restored
    under a lock, so two threads of this module never see each other's temporary value."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def follow_umask(fd: int) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always 0600) the mode ``open()`` would have given it."""
    os.fchmod(fd, 0o666 & ~current_umask())


@contextlib.contextmanager
def atomic_open(
    path: str | Path, mode: str = "w", encoding: str | None = "utf-8", *, fsync: bool = True
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    A crash or kill while writing leaves the previous ``path`` (if any) untouched and no partial file. The file
    gets the mode ``open()`` would give it (``0o666 & ~umask``, e.g. 0644 under umask 022), not mkstemp's 0600.
    ``fsync=False`` skips the flush to disk (still no partial file) for many small regenerable files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        follow_umask(fd)
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Write one line per item, each terminated by a newline."""
    with atomic_open(path, "w") as f:
        for line in lines:
            f.write(line)
            f.write("\n")


def check_overwrite(paths: Iterable[str | Path], force: bool) -> None:
    """Refuse to overwrite existing outputs unless ``force`` is set."""
    if force:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise S3LError(f"{existing[0]}{more} already exists; pass --force to overwrite")


def require_file(path: str | Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: {what} not found")
    return path


def require_dir(path: str | Path, what: str = "directory") -> Path:
    path = Path(path)
    if not path.is_dir():
        raise S3LError(f"{path}: {what} not found")
    return path
