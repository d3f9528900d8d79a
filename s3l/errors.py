"""The one exception type for mistakes a user can cause.

Anything a user can get wrong (a bad path, unreadable audio, a label file that does not match its manifest,
a wrong label rate) raises :class:`S3LError` with a one-line message that names the file (and line where
there is one). The CLI prints it in red and exits with status 2; it never shows a traceback. Bugs in s3l
itself still raise ordinary exceptions.
"""

from __future__ import annotations

from pathlib import Path


class S3LError(Exception):
    """A user-facing error with a one-line message."""


def where(path: str | Path, line: int | None = None) -> str:
    """``file:line`` prefix used by every error message that points into a file (lines are 1-based)."""
    return f"{path}:{line}" if line is not None else str(path)
