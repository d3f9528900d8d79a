"""``s3l finetune``: CTC fine-tuning on letters."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import (
    BELOW_ONE,
    DEVICE,
    MAX_BAD_UPDATES,
    NPROC,
    NUM_WORKERS,
    POSITIVE,
    PRECISION,
    PROBABILITY,
    THREADS,
    model_args,
    training_options,
)
from s3l.paths import writing_to

_PRESET = "(default: the --ft-preset's value)"
T = training_options("--ft-preset")


def finetune(
    data: Path = typer.Option(..., "--data", help="Directory with {split}.tsv, {split}.ltr and dict.ltr.txt."),
    out: Path = T.out,
    init: Path = typer.Option(None, "--init", help="Pre-trained model to fine-tune: an s3l checkpoint "
                              "(pre-training or CTC), a fairseq .pt or a Hugging Face directory. A new, randomly "
                              "initialised output layer is put on its backbone."),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="Instead of --init: a randomly initialised "
                                      "--preset model trained with the same budget (the baseline). Its feature "
                                      "encoder is trained, not frozen, and there is no --freeze-updates period: "
                                      "frozen random layers would make an unfair baseline."),
    preset: str = typer.Option(None, "--preset", help="tiny (CPU demo), base, large, xlarge: the architecture "
                               "for --from-scratch, and the optimisation defaults (with --init: tiny's for a "
                               "tiny-shaped checkpoint, else the papers')."),
    ft_preset: str = typer.Option("10min", "--ft-preset", help="Labelled-data preset 10min, 1h, 10h, 100h, 960h: "
                                  "masking and LayerDrop from wav2vec 2.0 Table 6, learning rate, updates and "
                                  "freeze period from fairseq's base_*.yaml (tiny: a CPU budget, no freeze, "
                                  "no LayerDrop)."),
    train_split: str = typer.Option("train-10min", "--train-split", help="Labelled training split."),
    valid_split: str = typer.Option("auto", "--valid-split", help="Split for dev WER (greedy decoding) and "
                                    "checkpoint_best; auto: dev if the data has it, else valid ('' for none)."),
    mask_prob: float = typer.Option(None, "--mask-prob", callback=PROBABILITY, help="Time masking, fairseq "
                                    "convention: the expected fraction of masked frames = p x 10 for the paper's "
                                    "span-start probability p (Table 6: 0.075 x 10 = 0.75 for 10min). " + _PRESET),
    mask_channel_prob: float = typer.Option(None, "--mask-channel-prob", callback=PROBABILITY, help="Channel "
                                            "masking, same convention with spans of 64 (0.008 x 64 = 0.512 for "
                                            "10min). " + _PRESET),
    layerdrop: float = typer.Option(None, "--layerdrop", callback=BELOW_ONE, help="Probability of skipping a "
                                    "transformer block. " + _PRESET),
    model_arg: list[str] = T.model_arg,
    lr: float = typer.Option(None, "--lr", callback=POSITIVE, help="Peak learning rate of the tri-stage schedule (10 % "
                             "warm-up from 0.01 x lr, 40 % hold, 50 % exponential decay to 0.05 x lr). " + _PRESET),
    max_updates: int = T.max_updates,
    freeze_updates: int = typer.Option(None, "--freeze-updates", help="Updates during which only the output layer "
                                       "trains. " + _PRESET + "; 0 with --from-scratch."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Audio samples per batch and process, padding "
                                   "included (fairseq: 3.2M on each of 8 GPUs). " + _PRESET),
    max_sample_size: int = typer.Option(None, "--max-sample-size", min=1, help="Skip longer training utterances "
                                        "(reported; default: --max-tokens)."),
    min_sample_size: int = typer.Option(0, "--min-sample-size", min=0, help="Skip shorter training utterances "
                                        "(reported)."),
    update_freq: int = T.update_freq,
    clip_norm: float = T.clip_norm,
    valid_interval: int = typer.Option(None, "--valid-interval", help="Dev WER every N updates. " + _PRESET),
    save_interval: int = T.save_interval,
    log_interval: int = T.log_interval,
    best_metric: str = typer.Option(None, "--best-metric", help="Dev metric that selects checkpoint_best: wer, "
                                    "cer (greedy decoding) or loss (CTC). " + _PRESET + "; wer, tiny: cer."),
    max_bad_updates: int = MAX_BAD_UPDATES,
    seed: int = typer.Option(1, "--seed", min=0, help="Seed of the output layer, batch order, masks and dropout."),
    precision: str = PRECISION,
    device: str = DEVICE,
    num_workers: int = NUM_WORKERS,
    threads: int = THREADS,
    nproc: int = NPROC,
    resume: bool = T.resume,
    force: bool = T.force,
) -> None:
    """Fine-tune a pre-trained (or, as a baseline, random) model with CTC on letters; keep the best by dev WER."""
    from s3l.distributed import maybe_relaunch
    from s3l.finetune import FinetuneConfig, run_finetune

    pairs = model_args(model_arg)
    with writing_to(dirs={"--out": out}):
        maybe_relaunch(nproc)
        run_finetune(FinetuneConfig(
            data=data, out=out, init=init, from_scratch=from_scratch, preset=preset, ft_preset=ft_preset,
            train_split=train_split, valid_split=valid_split or None, mask_prob=mask_prob,
            mask_channel_prob=mask_channel_prob, layerdrop=layerdrop, model_args=tuple(pairs), lr=lr,
            max_updates=max_updates, freeze_updates=freeze_updates, max_tokens=max_tokens, update_freq=update_freq,
            best_metric=best_metric,
            clip_norm=clip_norm, valid_interval=valid_interval, save_interval=save_interval, log_interval=log_interval,
            max_sample_size=max_sample_size, min_sample_size=min_sample_size, max_bad_updates=max_bad_updates,
            seed=seed, precision=precision, device=device, num_workers=num_workers, threads=threads, resume=resume,
            force=force,
        ))
