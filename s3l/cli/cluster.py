"""``s3l cluster``: k-means unit labels for HuBERT pre-training."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import NON_NEGATIVE, PERCENT, POSITIVE, csv_list
from s3l.console import console
from s3l.paths import writing_to


def cluster(
    data: Path = typer.Option(..., "--data", help="Directory with {split}.tsv manifests."),
    out: Path = typer.Option(..., "--out", "-o", help="Label directory (KMDIR): {split}.km, dict.km.txt, "
                             "kmeans.safetensors, labels.json, summary.json; several label sets go in "
                             "sub-directories k{K}, {subspace} or k{K}-{subspace}."),
    fit_split: str = typer.Option("train", "--fit-split", help="Split the k-means models are fit on."),
    label_splits: str = typer.Option(None, "--label-splits", help="Comma-separated splits to label "
                                     "(default: every {split}.tsv in --data; '' labels none)."),
    feature: str = typer.Option(None, "--feature", help="mfcc (39-dim, 100 Hz, HuBERT iteration 1) or layer "
                                "(a transformer layer of --checkpoint, 50 Hz). Default: mfcc, or the --model's."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint for --feature layer (any file "
                                    "s3l.load_model reads)."),
    layer: int = typer.Option(None, "--layer", min=0, help="Layer for --feature layer: 0 = transformer input, "
                              "N = output of block N (fairseq's output_layer)."),
    k: str = typer.Option("100", "--k", help="Number of clusters; comma-separated values fit an ensemble "
                          "(one label set each, e.g. 50,100,500)."),
    product: str = typer.Option("", "--product", help="Product k-means: comma-separated feature subspaces, each "
                                "its own label set: static,delta,ddelta (MFCC columns 0:13, 13:26, 26:39) or "
                                "column ranges a:b."),
    algo: str = typer.Option("lloyd", "--algo", help="lloyd (torch engine, streaming, bounded memory) or "
                             "sklearn-minibatch (the HuBERT paper's MiniBatchKMeans settings; loads every "
                             "sampled frame into RAM)."),
    sample_pct: float = typer.Option(100.0, "--sample-pct", callback=PERCENT, help="Percentage of fit-split "
                                     "utterances sampled (with --seed) to fit on."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the utterance sample and the k-means initialisation."),
    max_iter: int = typer.Option(100, "--max-iter", help="Lloyd iterations at most."),
    tol: float = typer.Option(1e-3, "--tol", callback=NON_NEGATIVE, help="Stop when an iteration lowers the "
                              "inertia by less than this fraction (1e-4: ~0.7 % lower inertia for ~2.5x the "
                              "iterations)."),
    max_memory: float = typer.Option(2.0, "--max-memory", callback=POSITIVE, help="Working-memory cap of the "
                                     "k-means engine in GB (sets how many frames are processed at once)."),
    model: str = typer.Option("", "--model", help="Apply fitted kmeans.safetensors file(s) (comma-separated) "
                              "to --label-splits instead of fitting."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (extraction, Lloyd, labelling)."),
    shard: int = typer.Option(0, "--shard", help="This machine's part of the label splits (with --model)."),
    num_shards: int = typer.Option(1, "--num-shards", min=1, help="Number of machines labelling; each writes "
                                   "{split}_{i}_{n}.km and the last to finish joins them into {split}.km."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    batch_seconds: float = typer.Option(20.0, "--batch-seconds", callback=POSITIVE, help="Padded audio per "
                                        "layer-feature batch (raise it on a GPU)."),
    chunk_seconds: float = typer.Option(100.0, "--chunk-seconds", callback=POSITIVE, help="Utterances longer "
                                        "than this go through the model in chunks (layer features)."),
    keep_features: bool = typer.Option(False, "--keep-features", help="Keep the fit features in OUT/feats "
                                       "({split}_{rank}_{n}.npy/.len/.idx, readable by fairseq's scripts)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing label files and models."),
) -> None:
    """Fit k-means on MFCC or layer features and write HuBERT unit labels ({split}.km + dict.km.txt)."""
    from s3l.distributed import maybe_relaunch
    from s3l.errors import S3LError

    try:
        ks = tuple(int(v) for v in csv_list(k))
    except ValueError:
        raise S3LError(f"--k {k!r}: expected comma-separated integers") from None
    if not ks or min(ks) < 2:
        raise S3LError(f"--k {k!r}: cluster counts must be at least 2")
    with writing_to(dirs={"--out": out}):
        maybe_relaunch(nproc)
        from s3l.cluster import ClusterConfig, run_cluster

        cfg = ClusterConfig(
            data=data, out=out, fit_split=fit_split,
            label_splits=None if label_splits is None else tuple(csv_list(label_splits)),
            feature=feature, checkpoint=checkpoint, layer=layer, ks=ks, product=tuple(csv_list(product)), algo=algo,
            sample_pct=sample_pct, seed=seed, max_iter=max_iter, tol=tol, max_memory_gb=max_memory,
            models=tuple(Path(m) for m in csv_list(model)), device=device, shard=shard, num_shards=num_shards,
            batch_seconds=batch_seconds, chunk_seconds=chunk_seconds, keep_features=keep_features,
            force=force,
        )
        summary = run_cluster(cfg)
    if summary is not None:
        print_summary(summary)


def print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"k-means on {summary['feature']} features ({summary['label_rate']} Hz)")
    for col in ("label set", "K", "inertia", "used", "perplexity", "iters", "fit s"):
        table.add_column(col, justify="left" if col == "label set" else "right")
    for s in summary["label_sets"]:
        table.add_row(s["dir"], str(s["k"]), f"{s['inertia']:.4g}", str(s["used_clusters"]),
                      f"{s['perplexity']:.1f}", str(s["n_iter"]), f"{s['fit_seconds'] or 0:.1f}")
    console.print(table)
    splits = ", ".join(f"{n}: {v['utterances']} utt / {v['frames']} frames" for n, v in summary["splits"].items())
    times = ", ".join(f"{k.replace('_seconds', '')} {v:.1f}s" for k, v in summary["times"].items())
    console.print(f"labelled {splits or 'no splits'}; {times}")
