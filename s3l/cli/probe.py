"""``s3l probe``: linear phone probes on frozen MFCC or layer features, frame accuracy per layer."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import DEVICE, POSITIVE, THREADS, csv_list
from s3l.console import console
from s3l.errors import S3LError
from s3l.paths import writing_to


def probe(
    data: Path = typer.Option(..., "--data", help="Directory with {split}.tsv manifests and their {split}.phn."),
    out: Path = typer.Option(..., "--out", "-o", help="Report directory: probe.json and probe.png."),
    fit_split: str = typer.Option("train-1h", "--fit-split", help="Split the probes are fit on."),
    eval_split: str = typer.Option("dev", "--eval-split", help="Split the probes are scored on."),
    feature: str = typer.Option(None, "--feature", help="mfcc: the 39-dim MFCCs of `s3l cluster` (100 Hz)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Probe the layers of this model (any file "
                                    "s3l.load_model reads: pre-trained, or a CTC model's backbone)."),
    random_init: str = typer.Option(None, "--random-init", help="Probe the layers of a randomly initialised model "
                                    "of this preset (tiny, base, large), weights seeded by --seed: the baseline."),
    layers: str = typer.Option("all", "--layers", help="all, or comma-separated layers: 0 = transformer input, "
                               "N = output of block N."),
    max_frames: int = typer.Option(100_000, "--max-frames", min=1, help="Frames per split at most: whole "
                                   "utterances in a seeded order, then a seeded subsample."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the frame sample and of --random-init's weights."),
    max_iter: int = typer.Option(100, "--max-iter", min=1, help="L-BFGS iterations per layer at most."),
    batch_seconds: float = typer.Option(80.0, "--batch-seconds", callback=POSITIVE, help="Padded audio per "
                                        "forward batch."),
    device: str = DEVICE,
    threads: int = THREADS,
    force: bool = typer.Option(False, "--force", help="Overwrite probe.json and probe.png."),
) -> None:
    """Linear phone probe (SUPERB-style): a softmax classifier of frame phones on frozen features, per layer."""
    from s3l.probe import ProbeConfig, run_probe

    if layers.strip() == "all":
        chosen = None
    else:
        try:
            chosen = tuple(int(v) for v in csv_list(layers))
        except ValueError:
            raise S3LError(f"--layers {layers!r}: expected all or comma-separated integers") from None
        if not chosen:
            raise S3LError("--layers: name at least one layer, or all")
    cfg = ProbeConfig(
        data=data, out=out, fit_split=fit_split, eval_split=eval_split, feature=feature, checkpoint=checkpoint,
        random_init=random_init, layers=chosen, max_frames=max_frames, seed=seed, max_iter=max_iter,
        batch_seconds=batch_seconds, device=device, threads=threads, force=force,
    )
    with writing_to(dirs={"--out": out}):
        report = run_probe(cfg)
    print_report(report)


def print_report(report: dict) -> None:
    from rich.table import Table

    what = report["checkpoint"] or (f"random {report['random_init']}" if report["random_init"] else "mfcc")
    f = report["frames"]
    table = Table(title=f"linear phone probe: {what} ({f['rate']} Hz), fit on {report['fit_split']} "
                        f"({f['fit']:,} frames), scored on {report['eval_split']} ({f['eval']:,} frames)",
                  title_justify="left")
    for col in ("layer", "accuracy", "fit accuracy", "L-BFGS iters"):
        table.add_column(col, justify="right")
    for r in report["layers"]:
        best = r["layer"] == report["best_layer"]
        iters = str(r["iterations"]) + ("" if r["converged"] else " (not converged)")
        table.add_row(str(r["layer"]), f"[bold]{r['accuracy']:.4f}[/]" if best else f"{r['accuracy']:.4f}",
                      f"{r['fit_accuracy']:.4f}", iters)
    console.print(table)
    console.print(f"majority class {report['majority_accuracy']:.4f}; best layer {report['best_layer']} "
                  f"{report['best_accuracy']:.4f}; {report['phones']} phones; extraction "
                  f"{report['extract_seconds']:.1f}s, fitting {report['fit_seconds']:.1f}s")
