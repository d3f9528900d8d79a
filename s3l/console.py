"""The two rich consoles every module prints through: ``console`` (stdout: results, summaries) and ``console_err``
(stderr: progress, announcements, warnings, the one-line errors). Library code imports them from here, never from
:mod:`s3l.cli`, so using the library does not load typer or register the commands."""

from __future__ import annotations

from rich.console import Console

console = Console()
console_err = Console(stderr=True)
