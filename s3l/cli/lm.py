"""``s3l prep lm``: a modified Kneser-Ney n-gram language model (ARPA) from a text file."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import csv_list
from s3l.errors import S3LError
from s3l.paths import writing_to


def lm(
    text: Path = typer.Argument(..., help="Training text, one sentence per line (normalised like .wrd)."),
    order: int = typer.Option(4, "--order", help="n-gram order."),
    out: Path = typer.Option(..., "--out", help="ARPA file to write (loads in kenlm and pyctcdecode)."),
    discount_fallback: str | None = typer.Option(
        None, "--discount-fallback",
        help="Discounts D1,D2,D3+ for orders whose closed-form estimate fails on small or artificial text "
             "(lmplz's --discount_fallback; its default is 0.5,1,1.5). Without it such text is an error.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary as JSON here."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
) -> None:
    """Estimate an interpolated modified Kneser-Ney LM like KenLM's lmplz, for text that fits in memory."""
    from s3l.lm import LMConfig, build_lm

    fallback = _parse_fallback(discount_fallback)
    with writing_to(files={"--out": out, "--json": json_out}):
        build_lm(LMConfig(text=text, out=out, order=order, discount_fallback=fallback, json_out=json_out,
                          force=force))


def _parse_fallback(value: str | None) -> tuple[float, float, float] | None:
    if value is None:
        return None
    items = csv_list(value.replace(" ", ","))
    try:
        nums = [float(x) for x in items]
    except ValueError:
        raise S3LError(f"--discount-fallback: expected up to three numbers like 0.5,1,1.5, got {value!r}") from None
    if not 1 <= len(nums) <= 3:
        raise S3LError(f"--discount-fallback: expected one to three discounts, got {len(nums)}")
    nums += [nums[-1]] * (3 - len(nums))  # lmplz repeats the last value
    for k, d in enumerate(nums, start=1):
        if not 0.0 <= d <= k:
            raise S3LError(f"--discount-fallback: D{k} = {d} is outside [0, {k}]")
    return (nums[0], nums[1], nums[2])
