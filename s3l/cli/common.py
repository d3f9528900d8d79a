"""Console objects and small option helpers shared by the command modules."""

from __future__ import annotations

from rich.console import Console

console = Console()
console_err = Console(stderr=True)


def csv_list(value: str | None) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; ``None`` or empty -> ``[]``."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]
