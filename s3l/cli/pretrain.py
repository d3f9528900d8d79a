"""``s3l pretrain``: wav2vec 2.0 or HuBERT pre-training."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import csv_list

_PRESET = "(default: the --preset's value)"


def pretrain(
    objective: str = typer.Option(..., "--objective", help="contrastive (wav2vec 2.0) or hubert."),
    data: Path = typer.Option(..., "--data", help="Directory with the {split}.tsv manifests."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory: config.json, train.jsonl, valid.jsonl, "
                             "checkpoint_{last,best}.safetensors, checkpoint_last.state.pt, summary.json."),
    train_split: str = typer.Option("train", "--train-split", help="Training split."),
    valid_split: str = typer.Option("valid", "--valid-split", help="Validation split ('' for none: then no "
                                    "validation and no checkpoint_best)."),
    preset: str = typer.Option("base", "--preset", help="tiny (CPU demo), base, large, xlarge (HuBERT only): "
                               "model and optimisation defaults from the papers."),
    labels: str = typer.Option("", "--labels", help="HuBERT: label directories KMDIR[,KMDIR2...] with "
                               "{split}.km and dict.km.txt (from `s3l cluster`); several = one loss per set."),
    label_rate: str = typer.Option("", "--label-rate", help="Labels per second (100 for MFCC units, 50 for layer "
                                   "units), one or one per --labels dir; needed only without labels.json."),
    mask_prob: float = typer.Option(None, "--mask-prob", help="fairseq convention: the expected fraction of "
                                    "masked frames, mask_prob = p x M where p is the papers' span-start "
                                    "probability (0.65 = 0.065 x 10 for wav2vec 2.0, 0.80 for HuBERT). " + _PRESET),
    mask_length: int = typer.Option(None, "--mask-length", help="Span length M in frames. " + _PRESET),
    masked_weight: float = typer.Option(None, "--masked-weight", help="HuBERT alpha in L = alpha Lm + (1 - "
                                        "alpha) Lu (1.0 = masked frames only). " + _PRESET),
    model_arg: list[str] = typer.Option([], "--model-arg", help="Any model config field, KEY=VALUE "
                                        "(repeatable), e.g. --model-arg encoder_layerdrop=0.1."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate. " + _PRESET),
    warmup_updates: int = typer.Option(None, "--warmup-updates", help="Linear warm-up updates (default: the "
                                       "preset's, or 8 % of --max-updates when that is given)."),
    max_updates: int = typer.Option(None, "--max-updates", help="Updates to train for (the learning rate "
                                    "decays linearly to 0 there). " + _PRESET),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Audio samples per batch and process: batch "
                                   "size x cropped length <= this (fairseq). " + _PRESET),
    max_sample_size: int = typer.Option(None, "--max-sample-size", help="Crop longer utterances to this many "
                                        "samples. " + _PRESET),
    min_sample_size: int = typer.Option(None, "--min-sample-size", help="Skip utterances shorter than this many "
                                        "samples (reported). " + _PRESET),
    update_freq: int = typer.Option(None, "--update-freq", help="Micro-batches per update (gradient "
                                    "accumulation; emulates that many times more GPUs). " + _PRESET),
    clip_norm: float = typer.Option(None, "--clip-norm", help="Clip the gradient norm to this (0 = no "
                                    "clipping). " + _PRESET),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="Decoupled (AdamW) weight decay."),
    valid_interval: int = typer.Option(None, "--valid-interval", help="Validate every N updates. " + _PRESET),
    save_interval: int = typer.Option(None, "--save-interval", help="Write checkpoint_last every N updates. "
                                      + _PRESET),
    log_interval: int = typer.Option(None, "--log-interval", help="Write a train.jsonl record every N updates. "
                                     + _PRESET),
    max_bad_updates: int = typer.Option(10, "--max-bad-updates", help="Stop after this many updates in a row "
                                        "with a non-finite loss or gradient norm (each one is skipped)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the weights, batch order, crops, masks and dropout."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on CUDA if supported, else fp16; fp32 "
                                  "on CPU), fp32, bf16 or fp16 (CUDA; dynamic loss scaling)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    num_workers: int = typer.Option(1, "--num-workers", help="DataLoader worker processes per training process."),
    threads: int = typer.Option(0, "--threads", help="CPU threads per process (0: torch's default, or cores / "
                                "--nproc). On a machine shared with other jobs, 1 is often several times faster."),
    nproc: int = typer.Option(1, "--nproc", help="Training processes on this machine (torch.distributed; the "
                              "same as running under torchrun)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from checkpoint_last."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds a run (its files are "
                               "deleted)."),
) -> None:
    """Pre-train wav2vec 2.0 (contrastive) or HuBERT on unlabelled audio."""
    from s3l.distributed import maybe_relaunch
    from s3l.errors import S3LError

    maybe_relaunch(nproc)
    from s3l.pretrain import PretrainConfig, run_pretrain

    pairs = []
    for item in model_arg:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise S3LError(f"--model-arg {item!r}: expected KEY=VALUE")
        pairs.append((key.strip(), value.strip()))
    try:
        rates = tuple(float(r) for r in csv_list(label_rate))
    except ValueError:
        raise S3LError(f"--label-rate {label_rate!r}: expected numbers") from None
    cfg = PretrainConfig(
        objective=objective, data=data, out=out, train_split=train_split, valid_split=valid_split or None,
        preset=preset, labels=tuple(Path(d) for d in csv_list(labels)), label_rate=rates, mask_prob=mask_prob,
        mask_length=mask_length, masked_weight=masked_weight, model_args=tuple(pairs), lr=lr,
        warmup_updates=warmup_updates, max_updates=max_updates, max_tokens=max_tokens,
        max_sample_size=max_sample_size, min_sample_size=min_sample_size, clip_norm=clip_norm,
        update_freq=update_freq, valid_interval=valid_interval, save_interval=save_interval,
        log_interval=log_interval, weight_decay=weight_decay, max_bad_updates=max_bad_updates, seed=seed,
        precision=precision, device=device, num_workers=num_workers, threads=threads, resume=resume, force=force,
    )
    run_pretrain(cfg)
