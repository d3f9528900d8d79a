"""The run around the shared loop, for both trainers (``s3l pretrain``, ``s3l finetune``): the run directory and its
``--force`` / ``--resume`` rules, the precision, the validation split, ``--model-arg`` values, the effective
configuration (``config.json`` and its table) and ``summary.json``. Each trainer keeps only its presets, data and
:class:`~s3l.train.loop.Task`.

A run directory holds ``config.json``, ``train.jsonl`` / ``valid.jsonl``, ``checkpoint_last.safetensors`` with
``checkpoint_last.state.safetensors`` (resumable), ``checkpoint_best.safetensors`` and, at the end,
``summary.json``. It holds a run once it has ``checkpoint_last`` and its state: only then does a plain command
refuse it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from s3l.errors import S3LError

RUN_FILES = ("config.json", "train.jsonl", "valid.jsonl", "summary.json", "checkpoint_last.safetensors",
             "checkpoint_last.state.safetensors", "checkpoint_last.state.pt", "checkpoint_best.safetensors")


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """The settings both training commands share; their configs extend it. ``None`` means "the preset's value"."""

    valid_split: str | None = "auto"  # auto: dev if present, else valid; None: no validation (no checkpoint_best)
    model_args: tuple[tuple[str, str], ...] = ()  # any other ModelConfig field, as strings
    lr: float | None = None
    max_updates: int | None = None
    max_tokens: int | None = None
    update_freq: int | None = None
    clip_norm: float | None = None
    valid_interval: int | None = None
    save_interval: int | None = None
    log_interval: int | None = None
    max_bad_updates: int = 10
    seed: int = 1
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"
    num_workers: int = 1
    threads: int = 0  # CPU threads per process (0: torch's default, or cores / processes under torchrun)
    resume: bool = False
    force: bool = False


def resolve_precision(precision: str, device: str) -> str:
    """The precision a run uses. ``auto`` is fp32 on CPU, so that a CPU run gives the same numbers on every
    machine; bf16 on CPU must be asked for (it pays on CPUs with avx512_bf16 or AMX, elsewhere it is emulated)."""
    import torch

    if precision == "auto":
        if not device.startswith("cuda"):
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision not in ("fp32", "bf16", "fp16"):
        raise S3LError(f"unknown --precision {precision!r} (auto, fp32, bf16 or fp16)")
    if precision == "fp16" and not device.startswith("cuda"):
        raise S3LError("--precision fp16 needs a CUDA device; on CPU use bf16 or fp32")
    return precision


def choose_valid_split(data: Path, name: str | None, is_main: bool) -> str | None:
    """The validation split to use (``auto`` resolved), said on stderr when it was chosen for the user."""
    from s3l.manifest import resolve_valid_split

    chosen = resolve_valid_split(data, name)
    if is_main and name == "auto":
        from s3l.console import console_err

        console_err.print(f"validating on {chosen} ({data / f'{chosen}.tsv'}; --valid-split to choose another)",
                          highlight=False)
    return chosen


def prepare_out(out: Path, resume: bool, force: bool, is_main: bool) -> None:
    """Check ``out`` against ``--resume`` / ``--force`` and make it ready. Files of a run that stopped before its
    first save are replaced, with a note."""
    from s3l import distributed
    from s3l.checkpoint import read_metadata
    from s3l.train.loop import LAST, STATE, state_file

    if out.exists() and not out.is_dir():
        raise S3LError(f"{out}: --out exists and is not a directory")
    saved = (out / LAST).is_file() and state_file(out) is not None
    if resume and not saved:
        raise S3LError(f"{out}: nothing to resume (no {LAST} with its {STATE}: no run was saved there); "
                       "run without --resume to start anew")
    if saved and not resume and not force:
        update = read_metadata(out / LAST).get("num_updates")
        raise S3LError(f"{out}: holds a run saved at update {update}; pass --resume to continue it or --force "
                       "to start over")
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            if existing and not saved:
                from s3l.console import console_err

                console_err.print(f"note: {out} has no saved checkpoint (an earlier run stopped before its "
                                  f"first save): starting anew, replacing {', '.join(existing)}", highlight=False)
            for n in existing:
                (out / n).unlink()
    distributed.barrier()


def check_resume(out: Path, model_cfg: Any) -> None:
    """``--resume`` continues the saved run only with the model config it was saved with."""
    from s3l.checkpoint import read_metadata
    from s3l.train.loop import LAST

    last = out / LAST
    if not last.is_file():
        return  # the loop names what is missing
    saved = read_metadata(last).get("config", {})
    now = model_cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        raise S3LError(f"{last}: the model config differs from this command's in {', '.join(diff)}; resume with "
                       "the same --preset and model options")


def parse_model_args(model: Any, pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """``("dropout", "0.0")`` -> ``{"dropout": 0.0}``, typed after the field's current value."""
    out: dict[str, Any] = {}
    for key, text in pairs:
        if key not in {f.name for f in fields(model)}:  # not hasattr: methods and properties are no fields
            raise S3LError(f"--model-arg {key}: no such model config field")
        cur = getattr(model, key)
        try:
            if isinstance(cur, bool):
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = text.lower() in ("true", "1")
            elif isinstance(cur, tuple):
                out[key] = tuple(type(cur[0])(v) for v in text.split(",")) if cur else tuple(text.split(","))
            else:
                out[key] = type(cur)(text)
        except ValueError:
            raise S3LError(f"--model-arg {key}={text}: expected a value like {cur!r}") from None
    return out


def announce(out: Path, command: str, title: str, cfg: Any, opt: Any, precision: str, info: Any,
             report: dict[str, Any], model_cfg: Any, model_fields: Sequence[str], notes: Sequence[str] = ()) -> None:
    """Write the effective configuration to ``config.json`` (``{command: cfg, "optimisation": opt, ...}``) and
    print it as a table (``opt``, the run, ``report``, the ``model_fields`` of the model), then ``notes``."""
    from rich.table import Table

    from s3l.console import console
    from s3l.fileio import atomic_write_text

    run = {k: _jsonable(v) for k, v in dataclasses.asdict(cfg).items()}
    doc = {command: run, "optimisation": dataclasses.asdict(opt), "precision": precision,
           "world_size": info.world_size, "device": info.device, "data": report, "model": model_cfg.to_dict()}
    atomic_write_text(out / "config.json", json.dumps(doc, indent=2) + "\n")
    table = Table(title=title, show_header=False)
    for k, v in {**dataclasses.asdict(opt), "precision": precision, "processes": info.world_size,
                 "device": info.device, **report}.items():
        table.add_row(k, str(v))
    for k in model_fields:
        table.add_row(f"model.{k}", str(getattr(model_cfg, k)))
    console.print(table)
    for note in notes:
        console.print(note)
    console.print(f"effective configuration: {out / 'config.json'}")


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    from s3l.fileio import atomic_write_text

    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)) and any(isinstance(v, Path) for v in value):
        return [str(v) for v in value]
    return value
