"""Output paths checked before a command starts, and no empty directories left behind when it fails.

Every command wraps its work in :func:`writing_to`, naming the option of each output path::

    with writing_to(dirs={"--out": cfg.out}, files={"--json": cfg.json_out}):
        run(cfg)

Before the work starts, each path must be usable: an output directory must not be an existing file, an output
file must not be an existing directory, and the directory that will hold it must be creatable and writable.
That is checked by creating the missing directories, opening an anonymous temporary file in the innermost one
(what a write needs: a path under ``/proc``, a read-only mount or a directory without write permission fails
here, with one line naming the option and the path) and removing the directories again, so the work itself
sees the file system as it was and creates them when it writes. If the work fails (any exception, Ctrl-C, or a
non-zero exit of the workers a ``--nproc`` launch waits for), the directories that did not exist before are
removed as long as nothing but empty directories is inside them. Processes started by torch.distributed.run
never remove anything: the process that launched them owns the clean-up, so a failing rank never removes a
directory another rank is about to write into (under a user's own torchrun a failed run may leave an empty
directory).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from s3l.distributed import in_worker
from s3l.errors import S3LError


@contextlib.contextmanager
def writing_to(dirs: Mapping[str, Path | None] | None = None,
               files: Mapping[str, Path | None] | None = None) -> Iterator[None]:
    """Check output directories (``dirs``) and output files (``files``), keyed by option name; ``None`` = unused.

    Raises :class:`S3LError` for an unusable path before anything is written. If the block fails, removes the
    directories that did not exist before it and are still empty (or hold only empty directories).
    """
    created: list[Path] = []  # directories that did not exist before, outermost first per path
    try:
        for option, path in (dirs or {}).items():
            if path is not None:
                created += _usable_dir(option, Path(path))
        for option, path in (files or {}).items():
            if path is not None:
                created += _usable_file(option, Path(path))
        _remove_empty(created)  # the work creates them when it writes
        yield
    except SystemExit as e:
        if e.code not in (None, 0):
            _remove_empty(created)
        raise
    except BaseException:
        _remove_empty(created)
        raise


def _usable_dir(option: str, path: Path) -> list[Path]:
    if path.exists() and not path.is_dir():
        raise S3LError(f"{option} {path}: exists and is not a directory")
    created = _make_dirs(option, path, path)
    _probe(option, path, path, created)
    return created


def _usable_file(option: str, path: Path) -> list[Path]:
    if path.is_dir():
        raise S3LError(f"{option} {path}: is a directory; expected a file name")
    created = _make_dirs(option, path, path.parent)
    _probe(option, path, path.parent, created)
    return created


def _make_dirs(option: str, path: Path, directory: Path) -> list[Path]:
    """Create ``directory`` (``path`` or its parent) and its missing parents; return those created, outermost first."""
    missing = []
    p = directory.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise S3LError(f"{option} {path}: {p} is not a directory")
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # made meanwhile by another process (another rank)
            if not d.is_dir():
                _remove_empty(created)
                raise S3LError(f"{option} {path}: {d} is not a directory") from None
            continue
        except OSError as e:
            _remove_empty(created)
            raise S3LError(f"{option} {path}: cannot create directory {d} ({e.strerror})") from None
        created.append(d)
    return created


def _probe(option: str, path: Path, directory: Path, created: list[Path]) -> None:
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        _remove_empty(created)
        raise S3LError(f"{option} {path}: cannot write files in {directory} ({e.strerror})") from None


def _remove_empty(created: list[Path]) -> None:
    """Remove the created directories that hold nothing but (nested) empty directories, unless in a worker."""
    if in_worker():
        return  # the launcher cleans up; see the module docstring
    for top in created:
        if top.is_dir():
            for root, _subdirs, _files in os.walk(top, topdown=False):
                with contextlib.suppress(OSError):
                    os.rmdir(root)  # fails, as it should, wherever anything is left
