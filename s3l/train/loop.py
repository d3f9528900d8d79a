"""The one training loop, shared by pre-training and fine-tuning (the task differs, not the loop).

Read top to bottom: set up (optimizer, scaler, resume, DDP), then per update: ``update_freq`` micro-batches
(no DDP gradient sync but on the last), non-finite check, gradient clipping, optimizer step; every
``log_interval`` a JSONL record, every ``valid_interval`` a validation (best checkpoint), every
``save_interval`` the last checkpoint plus the training state. One code path for 1..N processes; only rank 0
writes files. SIGINT (Ctrl-C) or SIGTERM (a scheduler's preemption) stops the run between two updates, after
writing ``checkpoint_last`` and its state, so ``--resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.progress import TextColumn
from torch import nn

from s3l import distributed
from s3l.checkpoint import load_checkpoint, load_state, save_state
from s3l.console import console_err
from s3l.errors import S3LError
from s3l.progress import progress
from s3l.train.data import Batch, Data, iterate, loader
from s3l.train.log import JsonlLog, Meter, rng_state, seed_everything, set_rng_state
from s3l.train.optim import adam, set_lr

LAST, BEST, STATE = "checkpoint_last.safetensors", "checkpoint_best.safetensors", "checkpoint_last.state.safetensors"
LEGACY_STATE = "checkpoint_last.state.pt"  # s3l 0.1 (torch.save); read only through the weights-only unpickler
MIN_LOSS_SCALE = 1e-4  # fairseq's min_loss_scale: below it fp16 training has diverged


class Task(Protocol):
    """What pre-training and fine-tuning plug into the loop."""

    metric: str  # key of reduce()'s result that selects checkpoint_best (lower is better), e.g. "loss", "wer"

    def train_step(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Normalised scalar loss to back-propagate, and floats to log (averaged over the log interval)."""

    def valid_step(self, model: nn.Module, batch: Batch) -> dict[str, float]:
        """Sums to add over all validation batches of all processes (model in eval mode, no grad)."""

    def reduce(self, sums: dict[str, float]) -> dict[str, float]:
        """Validation metrics from the summed valid_step results; must contain ``metric``."""

    def save_model(self, path: Path, model: nn.Module, **meta: Any) -> None:
        """Write the model as an s3l safetensors checkpoint (``meta`` holds the update count)."""

    # Optional: ``set_num_updates(n)`` on the task and/or the model is called before every update, and
    # ``after_update(model, n)`` on the task after every update that changed the weights (``n`` counts it), e.g.
    # to move an EMA teacher towards the student. Skipped updates (non-finite, fp16 overflow) do not call it.


@dataclass(frozen=True)
class LoopConfig:
    max_updates: int
    schedule: Callable[[int], float]  # learning rate of the next update given the updates done
    update_freq: int = 1  # micro-batches per update (gradient accumulation)
    clip_norm: float = 0.0  # 0: no clipping (the norm is still logged)
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 CUDA only)
    valid_interval: int = 1000
    save_interval: int = 1000
    log_interval: int = 100
    max_bad_updates: int = 10  # consecutive non-finite updates that stop the run
    seed: int = 1
    num_workers: int = 0
    find_unused_parameters: bool = False  # DDP: needed when LayerDrop skips blocks
    resume: bool = False


@dataclass
class TrainState:
    """The training state saved beside checkpoint_last (plus optimizer, scaler and RNG)."""

    num_updates: int = 0
    epoch: int = 1
    position: int = 0  # micro-batches of this epoch already consumed (by each process)
    best: float | None = None
    best_update: int | None = None  # the update checkpoint_best is from
    bad_in_a_row: int = 0
    bad_total: int = 0


def train(model: nn.Module, task: Task, train_data: Data, valid_data: Data | None, cfg: LoopConfig, out: Path,
          info: distributed.DistInfo) -> dict[str, Any]:
    """Train ``model`` until ``cfg.max_updates``; return the final update count, best metric and last validation."""
    device = torch.device(info.device)
    model.to(device)
    optimizer = adam(model.parameters(), lr=cfg.schedule(0), weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
    autocast = _autocast(cfg.precision, device)
    st = TrainState()
    if cfg.resume:
        st = _resume(model, optimizer, scaler, out, info)
    else:
        seed_everything(cfg.seed + info.rank)  # masks and dropout differ between processes
    ddp = model
    if info.distributed:
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                  find_unused_parameters=cfg.find_unused_parameters)
    train_log, valid_log = JsonlLog(out / "train.jsonl", info.is_main), JsonlLog(out / "valid.jsonl", info.is_main)
    if cfg.resume:
        train_log.truncate_after(st.num_updates)
        valid_log.truncate_after(st.num_updates)
    params = [p for p in model.parameters() if p.requires_grad]
    meter, last_valid, overflows = Meter(), {}, 0
    t_start, audio_total, audio_interval = time.perf_counter(), 0.0, 0.0
    t_log = time.perf_counter()
    throughput = TextColumn("{task.fields[info]}")
    saved_at = st.num_updates if cfg.resume else -1
    with progress(throughput, disable=not info.is_main) as bar, _StopSignals(info) as stop:
        job = bar.add_task("train", total=cfg.max_updates, completed=st.num_updates, info="")
        while st.num_updates < cfg.max_updates:
            for group in _groups(train_data, st, cfg):
                if stop.agreed():
                    if st.num_updates != saved_at:
                        _save(model, task, optimizer, scaler, st, cfg, out, info)
                    stop.exit(out, st.num_updates)
                for obj in (model, task):  # e.g. the Gumbel temperature, fine-tuning's frozen first updates
                    if hasattr(obj, "set_num_updates"):
                        obj.set_num_updates(st.num_updates)
                lr = cfg.schedule(st.num_updates)
                set_lr(optimizer, lr)
                model.train()
                step = _step(ddp, task, group, optimizer, scaler, params, cfg, info, autocast)
                st.position += len(group)
                audio_total += step.audio_s * info.world_size
                audio_interval += step.audio_s
                if step.status == "bad":
                    st.bad_in_a_row += 1
                    st.bad_total += 1
                    if st.bad_in_a_row >= cfg.max_bad_updates:
                        raise S3LError(
                            f"{st.bad_in_a_row} updates in a row had a non-finite loss or gradient norm (after "
                            f"update {st.num_updates}); stopped. {out / LAST} is the last good checkpoint; "
                            "lower --lr, raise --warmup-updates or use --precision fp32"
                        )
                    continue
                st.bad_in_a_row = 0
                if step.status == "overflow":  # fp16: the scaler skipped the step and lowered the scale
                    overflows += 1
                    continue
                st.num_updates += 1
                if hasattr(task, "after_update"):
                    task.after_update(model, st.num_updates)
                for logs in step.logs:
                    meter.add(logs)
                meter.add({"lr": lr, "gnorm": step.gnorm})
                n = st.num_updates
                elapsed = time.perf_counter() - t_start
                bar.update(job, completed=n, info=f"{audio_total / max(elapsed, 1e-9):.0f} audio s/s")
                if n % cfg.log_interval == 0 or n == cfg.max_updates:
                    stats = Meter.merge(distributed.gather_objects(meter.state()))
                    now = time.perf_counter()
                    interval_audio = distributed.all_reduce_sum([audio_interval], info.device)[0]
                    rec = {"update": n, "epoch": st.epoch, **stats, "bad_updates": st.bad_total,
                           "audio_s_per_s": round(interval_audio / max(now - t_log, 1e-9), 2),
                           "wall_s": round(elapsed, 1)}
                    if cfg.precision == "fp16":
                        rec.update(loss_scale=scaler.get_scale(), overflows=overflows)
                    train_log.write(rec)
                    bar.update(job, description=f"train loss {stats.get('loss', math.nan):.3f}")
                    meter, t_log, audio_interval = Meter(), now, 0.0
                if valid_data is not None and (n % cfg.valid_interval == 0 or n == cfg.max_updates):
                    last_valid = evaluate(model, task, valid_data, cfg, info, autocast)
                    valid_log.write({"update": n, "epoch": st.epoch, **last_valid})
                    metric = last_valid[task.metric]
                    if info.is_main:
                        bar.console.print(f"update {n}: valid " + " ".join(
                            f"{k} {v:.4g}" for k, v in last_valid.items()), highlight=False)
                    if st.best is None or metric < st.best:
                        st.best, st.best_update = metric, n
                        if info.is_main:
                            task.save_model(out / BEST, model, num_updates=n, **{f"valid_{task.metric}": metric})
                if (n % cfg.save_interval == 0 or n == cfg.max_updates):
                    _save(model, task, optimizer, scaler, st, cfg, out, info)
                    saved_at = n
                if n >= cfg.max_updates:
                    break
    return {"num_updates": st.num_updates, "best": st.best, "best_update": st.best_update, "metric": task.metric,
            "valid": last_valid,
            "bad_updates": st.bad_total, "train_seconds": round(time.perf_counter() - t_start, 1)}


@dataclass
class _Step:
    status: str  # "ok", "bad" (non-finite loss or gradient norm: skipped) or "overflow" (fp16: skipped)
    gnorm: float
    logs: list[dict[str, float]]  # per micro-batch
    audio_s: float  # seconds of audio in this process's micro-batches


def _step(ddp: nn.Module, task: Task, group: list[Batch], optimizer: torch.optim.Optimizer,
          scaler: torch.amp.GradScaler, params: list[nn.Parameter], cfg: LoopConfig, info: distributed.DistInfo,
          autocast: contextlib.AbstractContextManager) -> _Step:
    """One update: forward/backward of every micro-batch (DDP syncs gradients on the last only), the
    non-finite check (agreed by all processes), clipping and the optimizer step unless skipped."""
    bad, audio_s, logs_list = False, 0.0, []
    for k, batch in enumerate(group):
        sync = k == len(group) - 1 or not info.distributed
        with contextlib.nullcontext() if sync else ddp.no_sync():  # forward and backward inside
            with autocast:
                loss, logs = task.train_step(ddp, batch.to(info.device))
            loss_f = float(loss.detach())
            bad |= not math.isfinite(loss_f)
            scaler.scale(loss / len(group)).backward()
        logs_list.append({"loss": loss_f, **logs})
        audio_s += batch.audio_seconds
    bad = distributed.all_reduce_sum([float(bad)], info.device)[0] > 0
    scaler.unscale_(optimizer)  # no-op unless fp16
    gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm or math.inf))
    status = "bad" if bad else "ok"
    if cfg.precision == "fp16":  # an overflow is no error: the scaler skips the step and lowers the scale
        if not bad:
            scaler.step(optimizer)
        scaler.update()
        if not bad and not math.isfinite(gnorm):
            status = "overflow"
        if scaler.get_scale() < MIN_LOSS_SCALE:
            raise S3LError(f"fp16 loss scale fell below {MIN_LOSS_SCALE}: the loss keeps overflowing; "
                           "use --precision bf16 or fp32")
    elif not math.isfinite(gnorm):
        status = "bad"
    elif not bad:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return _Step(status, gnorm, logs_list, audio_s)


def _groups(data: Data, st: TrainState, cfg: LoopConfig) -> Iterator[list[Batch]]:
    """The rest of the current epoch as groups of ``update_freq`` micro-batches (the last may be smaller);
    at the end of the epoch, move ``st`` to the next one."""
    specs = data.order.specs(st.epoch, st.position)
    batches = iterate(loader(data.dataset, specs, cfg.num_workers))
    group: list[Batch] = []
    left = len(specs)
    for b in batches:
        group.append(b)
        if len(group) == min(cfg.update_freq, left):
            left -= len(group)
            yield group
            group = []
    st.epoch, st.position = st.epoch + 1, 0


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, data: Data, cfg: LoopConfig, info: distributed.DistInfo,
             autocast: contextlib.AbstractContextManager | None = None) -> dict[str, float]:
    """Validation metrics over ``data`` (every process takes its share; sums are added over processes).
    Runs with a fixed seed and puts the training RNG state back, so validating never changes training."""
    saved = rng_state()
    seed_everything(cfg.seed + 7919 * (info.rank + 1))
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    try:
        for batch in iterate(loader(data.dataset, data.order.specs(0), cfg.num_workers)):
            with autocast or contextlib.nullcontext():
                for k, v in task.valid_step(model, batch.to(info.device)).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
    finally:
        set_rng_state(saved)
        model.train(was_training)
    keys = sorted(set().union(*distributed.gather_objects(sorted(sums))))
    totals = distributed.all_reduce_sum([sums.get(k, 0.0) for k in keys], info.device)
    return task.reduce(dict(zip(keys, totals)))


def _save(model: nn.Module, task: Task, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
          st: TrainState, cfg: LoopConfig, out: Path, info: distributed.DistInfo) -> None:
    """checkpoint_last + its training state, both written to temporary files first and renamed together."""
    rngs = distributed.gather_objects(rng_state())
    if info.is_main:
        weights, state = out / f".next.{LAST}", out / f".next.{STATE}"
        task.save_model(weights, model, num_updates=st.num_updates)
        save_state(state, {
            "num_updates": st.num_updates, "epoch": st.epoch, "position": st.position, "best": st.best,
            "best_update": st.best_update,
            "bad_in_a_row": st.bad_in_a_row, "bad_total": st.bad_total, "world_size": info.world_size,
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rngs,
            "schedule": getattr(cfg.schedule, "state_dict", dict)(),
        })
        os.replace(weights, out / LAST)
        os.replace(state, out / STATE)
        (out / LEGACY_STATE).unlink(missing_ok=True)  # a resumed s3l 0.1 run: the old state is superseded
    distributed.barrier()


def state_file(out: Path) -> Path | None:
    """The training state beside ``checkpoint_last`` in ``out`` (the current format first), if any."""
    for name in (STATE, LEGACY_STATE):
        if (out / name).is_file():
            return out / name
    return None


class _StopSignals:
    """SIGINT/SIGTERM set a flag that the loop checks between updates (all processes agree on it), so the
    stop happens at a consistent point. With one process a second Ctrl-C stops at once; under torchrun the
    launcher forwards the signal again, so workers always finish the update and save."""

    def __init__(self, info: distributed.DistInfo) -> None:
        self.info, self.signum = info, 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT and not distributed.in_worker():
            raise KeyboardInterrupt  # the second Ctrl-C: stop now (checkpoint_last is the last save)
        if not self.signum and self.info.is_main:
            now = "" if distributed.in_worker() else " (Ctrl-C again to stop at once)"
            sys.stderr.write(f"\n{signal.Signals(signum).name}: stopping after this update and saving "
                             f"checkpoint_last{now}\n")
        self.signum = self.signum or signum

    def agreed(self) -> bool:
        """True on every process once any process got a signal (one collective per update when distributed)."""
        if not self.info.distributed:
            return bool(self.signum)
        return distributed.all_reduce_sum([float(bool(self.signum))], self.info.device)[0] > 0

    def exit(self, out: Path, num_updates: int) -> None:
        signum = self.signum or signal.SIGTERM  # another process got the signal
        if self.info.is_main:
            console_err.print(f"stopped at update {num_updates}: {out / LAST} and its training state are saved; "
                              "continue with --resume")
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)


def _resume(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, out: Path,
            info: distributed.DistInfo) -> TrainState:
    path = state_file(out)
    if path is None or not (out / LAST).is_file():
        raise S3LError(f"{out}: nothing to resume (no {LAST} with its {STATE}); run without --resume to start anew")
    state = load_state(path)
    tensors, meta = load_checkpoint(out / LAST)
    if meta.get("num_updates") != state["num_updates"]:
        raise S3LError(f"{out / LAST}: weights are from update {meta.get('num_updates')} but {path.name} is from "
                       f"update {state['num_updates']}; the pair is inconsistent")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise S3LError(f"{out / LAST}: does not fit the configured model ({first})") from None
    optimizer.load_state_dict(state["optimizer"])
    if scaler.is_enabled() and state["scaler"]:  # fp16 now and before; else the scale starts afresh
        scaler.load_state_dict(state["scaler"])
    st = TrainState(num_updates=state["num_updates"], epoch=state["epoch"], position=state["position"],
                  best=state["best"], best_update=state.get("best_update"), bad_in_a_row=state["bad_in_a_row"],
                  bad_total=state["bad_total"])
    if state["world_size"] == info.world_size:
        set_rng_state(state["rng"][info.rank])
    else:  # the batch order per process differs: continue the epoch from the same global position
        st.position = st.position * state["world_size"] // info.world_size
        seed_everything(st.num_updates * 1000 + info.rank)
        if info.is_main:
            console_err.print(f"note: resuming with {info.world_size} processes instead of {state['world_size']}: "
                              "the batch order and random state differ from an uninterrupted run")
    if info.is_main:
        console_err.print(f"resuming from update {st.num_updates} (epoch {st.epoch}, batch {st.position})")
    return st


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA or CPU; fp16 (with loss scaling) on CUDA only."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in ("bf16", "fp16"):
        raise S3LError(f"unknown --precision {precision!r} (fp32, bf16 or fp16)")
    if precision == "fp16" and device.type != "cuda":
        raise S3LError("--precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
