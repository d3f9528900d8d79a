"""Small option helpers and option definitions shared by the command modules (the consoles: :mod:`s3l.console`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import fields
from types import SimpleNamespace

import typer

from s3l.errors import S3LError


def csv_list(value: str | None) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]``; ``None`` or empty -> ``[]``."""
    if not value:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def finite(low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[float | None], float | None]:
    """A typer ``callback`` for a float option: a finite number in the given range (an unset ``None`` passes).

    typer's own ``min=``/``max=`` let ``inf`` and ``nan`` through, so float options use this instead; integer
    options use ``min=``/``max=``. Either way a bad value is a usage error: one line, exit 2.
    """
    parts = []
    if low is not None:
        parts.append(f"x{'>' if low_open else '>='}{low:g}")
    if high is not None:
        parts.append(f"x{'<' if high_open else '<='}{high:g}")
    expected = "a finite number" + (f" in the range {' and '.join(parts)}" if parts else "")

    def check(value: float | None) -> float | None:
        if value is None:
            return value
        ok = math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise typer.BadParameter(f"{value:g} is not {expected}")
        return value

    return check


def model_args(items: list[str]) -> tuple[tuple[str, str], ...]:
    """``--model-arg KEY=VALUE`` items -> ``(("KEY", "VALUE"), ...)``; KEY must be a model config field."""
    from s3l.models.config import ModelConfig

    known = {f.name for f in fields(ModelConfig)}
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise S3LError(f"--model-arg {item!r}: expected KEY=VALUE")
        if key not in known:
            raise S3LError(f"--model-arg {key}: no such model config field")
        pairs.append((key, value.strip()))
    return tuple(pairs)


# The usual float ranges.
FINITE = finite()
POSITIVE = finite(0, low_open=True)
NON_NEGATIVE = finite(0)
PROBABILITY = finite(0, 1)
BELOW_ONE = finite(0, 1, high_open=True)  # a fraction held out, a drop probability
PERCENT = finite(0, 100, low_open=True)
FRACTION = finite(0, 1, low_open=True)  # a share of a run, e.g. of --max-updates


# Options `s3l pretrain` and `s3l finetune` share.
MAX_BAD_UPDATES = typer.Option(10, "--max-bad-updates", min=1, help="Stop after this many updates in a row with a "
                               "non-finite loss or gradient norm (each one is skipped).")
PRECISION = typer.Option("auto", "--precision", help="auto (bf16 on CUDA if supported, else fp16; fp32 on CPU), fp32, "
                         "bf16 (CUDA, or CPUs with avx512_bf16 or AMX) or fp16 (CUDA; dynamic loss scaling).")
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")
NUM_WORKERS = typer.Option(1, "--num-workers", min=0, help="DataLoader worker processes per training process.")
THREADS = typer.Option(0, "--threads", min=0, help="CPU threads per process (0: torch's default, or cores / --nproc). "
                       "On a machine shared with other jobs, 1 is often several times faster.")
NPROC = typer.Option(1, "--nproc", help="Training processes on this machine (torch.distributed; the same as running "
                     "under torchrun).")


def training_options(preset_flag: str) -> SimpleNamespace:
    """The options `s3l pretrain` and `s3l finetune` share (``preset_flag``: the flag whose preset fills a default
    left unset, named in the help)."""
    d = f"(default: the {preset_flag}'s value)"
    return SimpleNamespace(
        out=typer.Option(..., "--out", "-o", help="Run directory: config.json, train.jsonl, valid.jsonl, "
                         "checkpoint_{last,best}.safetensors, checkpoint_last.state.safetensors, summary.json."),
        model_arg=typer.Option([], "--model-arg", help="Any model config field, KEY=VALUE (repeatable), e.g. "
                               "--model-arg encoder_layerdrop=0.1."),
        max_updates=typer.Option(None, "--max-updates", help="Updates to train for (the learning rate "
                                 "schedule ends there). " + d),
        update_freq=typer.Option(None, "--update-freq", help="Micro-batches per update (gradient "
                                 "accumulation; emulates that many times more GPUs). " + d),
        clip_norm=typer.Option(None, "--clip-norm", callback=NON_NEGATIVE, help="Clip the gradient norm to this "
                               "(0 = no clipping). " + d),
        save_interval=typer.Option(None, "--save-interval", help="Write checkpoint_last every N updates. " + d),
        log_interval=typer.Option(None, "--log-interval", help="Write a train.jsonl record every N updates. "
                                  + d),
        resume=typer.Option(False, "--resume", help="Continue the run in --out from checkpoint_last."),
        force=typer.Option(False, "--force", help="Start over in an --out that holds a run (its files are "
                           "deleted)."),
    )
