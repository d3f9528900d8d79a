"""One rich progress bar style for all long work (description, bar, count, rate, ETA)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from s3l.console import console_err


def progress(*extra_columns, disable: bool = False) -> Progress:
    """A Progress on stderr; ``extra_columns`` (e.g. a TextColumn with throughput) go before the times."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console_err,
        disable=disable,
        transient=False,
    )
