"""``s3l analyze-units``: PNMI, phone purity, cluster purity and the papers' unit plots."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import NON_NEGATIVE, PERCENT, POSITIVE, csv_list
from s3l.errors import S3LError
from s3l.paths import writing_to


def analyze_units(
    out: Path = typer.Option(..., "--out", help="Report directory (metrics.json, PNG plots, ...)."),
    units: Path = typer.Option(None, "--units", help="Unit labels to analyse: a KMDIR/{split}.km file."),
    phones: Path = typer.Option(
        None, "--phones", help="Frame-level phone labels ({split}.phn). Default with --layers/--codes: DATA/SPLIT.phn."
    ),
    unit_rate: int = typer.Option(
        None, "--unit-rate", min=1, help="Unit label rate in Hz. Default: the rate `s3l cluster` recorded in "
        "kmeans.safetensors beside the .km file, else 50."
    ),
    phone_rate: int = typer.Option(100, "--phone-rate", min=1, help="Phone label rate in Hz."),
    max_diff_ms: float = typer.Option(
        20.0, "--max-diff-ms", callback=NON_NEGATIVE,
        help="Largest per-utterance length difference (ms) between units and phones, after "
        "aligning rates by repetition, that is trimmed; more is an error (or skipped with --skip-mismatch). "
        "20 ms covers the frames MFCC and encoder windows lose at the end."
    ),
    skip_mismatch: bool = typer.Option(
        False, "--skip-mismatch",
        help="Leave out (and count) utterances whose lengths differ by more than --max-diff-ms.",
    ),
    layers: bool = typer.Option(
        False, "--layers", help="Layer sweep: k-means on every layer of --checkpoint for each --k; metrics and plot "
        "per layer (HuBERT Fig. 2)."
    ),
    codes: bool = typer.Option(
        False, "--codes", help="Quantizer codes of a contrastive --checkpoint: usage, perplexity, P(phone | code)."
    ),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Model checkpoint for --layers / --codes."),
    data: Path = typer.Option(None, "--data", help="Manifest directory with SPLIT.tsv (--layers / --codes)."),
    split: str = typer.Option(None, "--split", help="Split to analyse (--layers / --codes)."),
    fit_split: str = typer.Option(None, "--fit-split", help="--layers: split to fit k-means on (default: --split)."),
    k: str = typer.Option("100", "--k", help="--layers: comma-separated cluster counts, e.g. 50,100."),
    sample_pct: float = typer.Option(
        100.0, "--sample-pct", callback=PERCENT,
        help="--layers: percent of fit-split utterances whose frames fit k-means."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for k-means initialisation and utterance sampling."),
    top_codes: int = typer.Option(100, "--top-codes", help="--codes: most used codes shown in the heat map."),
    batch_seconds: float = typer.Option(80.0, "--batch-seconds", callback=POSITIVE, help="Audio seconds per "
                                        "forward batch."),
    device: str = typer.Option("cpu", "--device", help="Device for --layers / --codes (cpu, cuda, cuda:1)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing report files."),
) -> None:
    """Unit quality against frame-level phones: PNMI, phone purity, cluster purity, heat map, layer sweep."""
    from s3l.analysis.inputs import AnalyzeConfig
    from s3l.analysis.run import analyze_units as run

    try:
        ks = tuple(int(x) for x in csv_list(k))
    except ValueError:
        raise S3LError(f"--k expects comma-separated integers, got {k!r}") from None
    if not ks or min(ks) < 2:
        raise S3LError(f"--k needs cluster counts of at least 2, got {k!r}")
    cfg = AnalyzeConfig(
        out=out, units=units, phones=phones, unit_rate=unit_rate, phone_rate=phone_rate, max_diff_ms=max_diff_ms,
        skip_mismatch=skip_mismatch, layers=layers, codes=codes, checkpoint=checkpoint, data=data, split=split,
        fit_split=fit_split, ks=ks, sample_pct=sample_pct, seed=seed, top_codes=top_codes,
        batch_seconds=batch_seconds, device=device, force=force,
    )
    with writing_to(dirs={"--out": out}):
        run(cfg)
