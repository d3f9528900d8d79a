"""``s3l pretrain``: wav2vec 2.0 or HuBERT pre-training."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from s3l.cli.common import (
    DEVICE,
    FRACTION,
    MAX_BAD_UPDATES,
    NON_NEGATIVE,
    NPROC,
    NUM_WORKERS,
    POSITIVE,
    PRECISION,
    PROBABILITY,
    THREADS,
    csv_list,
    model_args,
    training_options,
)
from s3l.paths import writing_to

_PRESET = "(default: the --preset's value)"
T = training_options("--preset")


def pretrain(
    objective: str = typer.Option(..., "--objective", help="contrastive (wav2vec 2.0) or hubert."),
    data: Path = typer.Option(..., "--data", help="Directory with the {split}.tsv manifests."),
    out: Path = T.out,
    train_split: str = typer.Option("train", "--train-split", help="Training split."),
    valid_split: str = typer.Option("auto", "--valid-split", help="Validation split; auto: dev if the data has "
                                    "it, else valid ('' for none: then no validation and no checkpoint_best)."),
    preset: str = typer.Option("base", "--preset", help="tiny (CPU demo), base, large, xlarge (HuBERT only): "
                               "model and optimisation defaults from the papers."),
    labels: str = typer.Option("", "--labels", help="HuBERT: label directories KMDIR[,KMDIR2...] with "
                               "{split}.km and dict.km.txt (from `s3l cluster`); several = one loss per set."),
    label_rate: str = typer.Option("", "--label-rate", help="Labels per second (100 for MFCC units, 50 for layer "
                                   "units), one or one per --labels dir; needed only without labels.json."),
    mask_prob: float = typer.Option(None, "--mask-prob", callback=PROBABILITY, help="fairseq convention: the "
                                    "expected fraction of masked frames, mask_prob = p x M where p is the papers' "
                                    "span-start probability (0.65 = 0.065 x 10 for wav2vec 2.0, 0.80 for HuBERT). "
                                    + _PRESET),
    mask_length: int = typer.Option(None, "--mask-length", help="Span length M in frames. " + _PRESET),
    masked_weight: float = typer.Option(None, "--masked-weight", callback=PROBABILITY, help="HuBERT alpha in "
                                        "L = alpha Lm + (1 - alpha) Lu (1.0 = masked frames only). " + _PRESET),
    model_arg: list[str] = T.model_arg,
    lr: float = typer.Option(None, "--lr", callback=POSITIVE, help="Peak learning rate. " + _PRESET),
    warmup_updates: int = typer.Option(None, "--warmup-updates", help="Linear warm-up updates (default: the "
                                       "preset's, or 8 % of --max-updates when that is given)."),
    max_updates: int = T.max_updates,
    temp_floor_at: float = typer.Option(None, "--temp-floor-at", callback=FRACTION, help="Contrastive: the "
                                        "Gumbel temperature reaches its floor after this fraction of --max-updates "
                                        "(default: tiny 0.69, as BASE's decay over 400k updates; the papers' models "
                                        "keep the per-update decay 0.999995)."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Audio samples per batch and process: batch "
                                   "size x cropped length <= this (fairseq). " + _PRESET),
    max_sample_size: int = typer.Option(None, "--max-sample-size", min=1, help="Crop longer utterances to this many "
                                        "samples. " + _PRESET),
    min_sample_size: int = typer.Option(None, "--min-sample-size", min=0, help="Skip utterances shorter than this many "
                                        "samples (reported). " + _PRESET),
    update_freq: int = T.update_freq,
    clip_norm: float = T.clip_norm,
    weight_decay: float = typer.Option(0.01, "--weight-decay", callback=NON_NEGATIVE,
                                       help="Decoupled (AdamW) weight decay."),
    valid_interval: int = typer.Option(None, "--valid-interval", help="Validate every N updates. " + _PRESET),
    save_interval: int = T.save_interval,
    log_interval: int = T.log_interval,
    max_bad_updates: int = MAX_BAD_UPDATES,
    seed: int = typer.Option(1, "--seed", min=0, help="Seed of the weights, batch order, crops, masks and dropout."),
    precision: str = PRECISION,
    device: str = DEVICE,
    num_workers: int = NUM_WORKERS,
    threads: int = THREADS,
    nproc: int = NPROC,
    resume: bool = T.resume,
    force: bool = T.force,
) -> None:
    """Pre-train wav2vec 2.0 (contrastive) or HuBERT on unlabelled audio."""
    from s3l.distributed import maybe_relaunch
    from s3l.errors import S3LError
    from s3l.pretrain import PretrainConfig, run_pretrain

    pairs = model_args(model_arg)
    try:
        rates = tuple(float(r) for r in csv_list(label_rate))
    except ValueError:
        raise S3LError(f"--label-rate {label_rate!r}: expected numbers") from None
    if not all(0 < r < math.inf for r in rates):
        raise S3LError(f"--label-rate {label_rate!r}: expected positive finite numbers of labels per second")
    with writing_to(dirs={"--out": out}):
        maybe_relaunch(nproc)
        run_pretrain(PretrainConfig(
            objective=objective, data=data, out=out, train_split=train_split, valid_split=valid_split or None,
            preset=preset, labels=tuple(Path(d) for d in csv_list(labels)), label_rate=rates, mask_prob=mask_prob,
            mask_length=mask_length, masked_weight=masked_weight, model_args=tuple(pairs), lr=lr,
            warmup_updates=warmup_updates, max_updates=max_updates, temp_floor_at=temp_floor_at, max_tokens=max_tokens,
            max_sample_size=max_sample_size, min_sample_size=min_sample_size, clip_norm=clip_norm,
            update_freq=update_freq, valid_interval=valid_interval, save_interval=save_interval,
            log_interval=log_interval, weight_decay=weight_decay, max_bad_updates=max_bad_updates, seed=seed,
            precision=precision, device=device, num_workers=num_workers, threads=threads, resume=resume, force=force,
        ))
