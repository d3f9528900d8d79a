"""s3l.train.loop with a small stand-in model that follows the pre-training forward contract.

Resume after a simulated kill gives the same weights as an uninterrupted run; validation leaves training
untouched; two gloo processes equal one process with gradient accumulation; non-finite losses are skipped,
counted and, too many in a row, stop the run with the last good checkpoint intact.
"""

from __future__ import annotations

import math
import os
import socket
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from test_train_data import make_corpus
from torch import nn

from s3l import distributed
from s3l.checkpoint import load_checkpoint, save_checkpoint
from s3l.errors import S3LError
from s3l.manifest import read_manifest
from s3l.train.data import AudioDataset, BatchOrder, Data, batch_by_size, select
from s3l.train.log import read_jsonl
from s3l.train.loop import BEST, LAST, STATE, LoopConfig, train
from s3l.train.optim import LinearSchedule

Output = namedtuple("Output", "loss logs")
CPU = distributed.DistInfo(rank=0, world_size=1, local_rank=0, device="cpu")


class StandIn(nn.Module):
    """forward(wave (B, S), lengths (B,), targets) -> (loss, logs): predicts masked 20 ms frame log-energies.
    Random masks and dropout draw from the torch RNG, as the real models do."""

    def __init__(self, random: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 16, 400, stride=320)
        self.drop = nn.Dropout(0.1 if random else 0.0)
        self.mask_emb = nn.Parameter(torch.zeros(16))
        self.head = nn.Linear(16, 1)
        self.random, self.num_updates = random, 0

    def set_num_updates(self, n: int) -> None:
        self.num_updates = n

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor, targets: Any = None) -> Output:
        x = self.conv(wave[:, None]).transpose(1, 2)  # (B, T, 16)
        frames = wave[:, : x.shape[1] * 320].reshape(wave.shape[0], x.shape[1], 320)
        target = frames.pow(2).mean(-1).clamp_min(1e-8).log()  # (B, T)
        mask = torch.rand(x.shape[:2]) < 0.5 if self.random else torch.ones(x.shape[:2], dtype=torch.bool)
        x = torch.where(mask[..., None], self.mask_emb.expand_as(x), self.drop(x))
        pred = self.head(torch.tanh(x)).squeeze(-1)  # (B, T)
        loss = (pred - target).pow(2).mean()
        return Output(loss, {"masked": float(mask.float().mean()), "temp": 2.0 - 1e-3 * self.num_updates})


class StandInTask:
    metric = "loss"

    def __init__(self, nan_at: set[int] | None = None, kill_at: int | None = None) -> None:
        self.calls, self.nan_at, self.kill_at = 0, nan_at or set(), kill_at

    def train_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        self.calls += 1
        if self.kill_at is not None and self.calls > self.kill_at:
            raise KeyboardInterrupt  # stands for a SIGKILL between two checkpoints
        out = model(batch.wave, batch.lengths, batch.targets)
        loss = out.loss * float("nan") if self.calls in self.nan_at else out.loss
        return loss, out.logs

    def valid_step(self, model: nn.Module, batch: Any) -> dict[str, float]:
        return {"batches": 1.0, "loss": float(model(batch.wave, batch.lengths).loss)}

    def reduce(self, sums: dict[str, float]) -> dict[str, float]:
        return {"loss": sums["loss"] / sums["batches"]}

    def save_model(self, path: Path, model: nn.Module, **meta: Any) -> None:
        save_checkpoint(path, model.state_dict(), kind="standin", **meta)


def corpus(root: Path, write: bool = True) -> tuple[Data, Data]:
    if write:
        make_corpus(root, [3000 + 700 * i for i in range(12)])
        make_corpus(root, [4000, 5000, 6000], seed=1, name="valid")
    m = read_manifest(root / "train.tsv")
    sel = select(m, min_sample_size=1000, max_sample_size=8000, crop=True)
    train_data = Data(AudioDataset(m, [], crop=True, max_sample_size=8000, seed=3),
                      BatchOrder(batch_by_size(sel, max_tokens=16000, seed=3), seed=3))
    v = read_manifest(root / "valid.tsv")
    vsel = select(v, min_sample_size=1000, max_sample_size=8000, crop=True)
    valid = Data(AudioDataset(v, [], crop=True, max_sample_size=8000, seed=3),
                 BatchOrder(batch_by_size(vsel, max_tokens=16000, seed=3), seed=3, shuffle=False))
    return train_data, valid


def config(**kw: Any) -> LoopConfig:
    base = dict(max_updates=12, schedule=LinearSchedule(3e-3, 3, 12), update_freq=2, clip_norm=5.0,
                valid_interval=4, save_interval=4, log_interval=2, seed=11)
    return LoopConfig(**{**base, **kw})


def run(out: Path, data: tuple[Data, Data], task: StandInTask | None = None, **kw: Any) -> tuple[nn.Module, dict]:
    torch.manual_seed(0)
    model = StandIn()
    out.mkdir(exist_ok=True)
    summary = train(model, task or StandInTask(), data[0], data[1], config(**kw), out, CPU)
    return model, summary


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_resume_after_kill_matches_straight_run(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    straight, summary = run(tmp_path / "a", data)
    assert summary["num_updates"] == 12
    # 12 updates x 2 micro-batches; "killed" in the 19th micro-batch (update 10), after the checkpoint at 8
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", data, StandInTask(kill_at=18))
    assert load_checkpoint(tmp_path / "b" / LAST)[1]["num_updates"] == 8
    resumed, summary_b = run(tmp_path / "b", data, resume=True)
    assert summary_b["num_updates"] == 12
    assert same_weights(straight, resumed)
    log_a, log_b = read_jsonl(tmp_path / "a" / "train.jsonl"), read_jsonl(tmp_path / "b" / "train.jsonl")
    assert [r["update"] for r in log_b] == [2, 4, 6, 8, 10, 12]  # records after update 8 rewritten, not doubled
    for ra, rb in zip(log_a, log_b):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5) and ra["epoch"] == rb["epoch"]
    assert [r["update"] for r in read_jsonl(tmp_path / "b" / "valid.jsonl")] == [4, 8, 12]
    assert log_a[-1]["lr"] > 0 and log_a[0]["temp"] == pytest.approx(2.0 - 1e-3 * 0.5, abs=1e-9)


def test_validation_does_not_change_training(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    a, _ = run(tmp_path / "a", data, valid_interval=1, max_updates=6)
    b, _ = run(tmp_path / "b", (data[0], None), max_updates=6)
    assert same_weights(a, b)


class AutocastProbe(StandInTask):
    """Records, at every train and valid step, the dtype a matmul would produce there."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: set[tuple[str, torch.dtype]] = set()

    def train_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        self.dtypes.add(("train", (torch.ones(2, 2) @ torch.ones(2, 2)).dtype))
        return super().train_step(model, batch)

    def valid_step(self, model: nn.Module, batch: Any) -> dict[str, float]:
        self.dtypes.add(("valid", (torch.ones(2, 2) @ torch.ones(2, 2)).dtype))
        return super().valid_step(model, batch)


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    bf16, fp32 = AutocastProbe(), AutocastProbe()
    a, summary = run(tmp_path / "bf16", data, task=bf16, precision="bf16", max_updates=4)
    b, _ = run(tmp_path / "fp32", data, task=fp32, precision="fp32", max_updates=4)
    assert bf16.dtypes == {("train", torch.bfloat16), ("valid", torch.bfloat16)}
    assert fp32.dtypes == {("train", torch.float32), ("valid", torch.float32)}
    assert all(p.dtype == torch.float32 for p in a.parameters())  # autocast: the weights stay fp32
    assert not same_weights(a, b) and math.isfinite(summary["valid"]["loss"])
    with pytest.raises(S3LError, match="fp16 needs a CUDA device"):
        run(tmp_path / "fp16", data, precision="fp16", max_updates=1)


def test_best_checkpoint_follows_the_metric(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    run(tmp_path / "a", data, valid_interval=2)
    valid = read_jsonl(tmp_path / "a" / "valid.jsonl")
    best = min(valid, key=lambda r: r["loss"])
    tensors, meta = load_checkpoint(tmp_path / "a" / BEST)
    assert meta["num_updates"] == best["update"] and meta["valid_loss"] == pytest.approx(best["loss"])
    assert read_jsonl(tmp_path / "a" / "train.jsonl")[-1]["audio_s_per_s"] > 0


class HookTask(StandInTask):
    """Records what the loop's after-update hook sees (what an EMA teacher would average)."""

    def __init__(self, nan_at: set[int] | None = None) -> None:
        super().__init__(nan_at=nan_at)
        self.seen: list[tuple[int, torch.Tensor]] = []

    def after_update(self, model: nn.Module, n: int) -> None:
        self.seen.append((n, model.head.weight.detach().clone()))


def test_after_update_hook_sees_every_applied_update(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    task = HookTask(nan_at={5})  # the 3rd update attempt is skipped: no call for it
    model, summary = run(tmp_path / "a", data, task, max_updates=6)
    assert [n for n, _ in task.seen] == [1, 2, 3, 4, 5, 6] and summary["bad_updates"] == 1
    torch.manual_seed(0)
    weights = [StandIn().head.weight.detach(), *(w for _, w in task.seen)]
    assert all(not torch.equal(a, b) for a, b in zip(weights, weights[1:]))  # called after each step, not before
    assert torch.equal(weights[-1], model.head.weight.detach())  # the last call saw the final weights


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    # update_freq 2: micro-batch 5 belongs to the 3rd update attempt
    _, summary = run(tmp_path / "a", data, StandInTask(nan_at={5}), max_updates=6)
    assert summary["num_updates"] == 6 and summary["bad_updates"] == 1
    assert read_jsonl(tmp_path / "a" / "train.jsonl")[-1]["bad_updates"] == 1
    with pytest.raises(S3LError, match=r"3 updates in a row had a non-finite loss .*after update 4.*last good"):
        run(tmp_path / "b", data, StandInTask(nan_at=set(range(9, 40))), max_bad_updates=3)
    tensors, meta = load_checkpoint(tmp_path / "b" / LAST)
    assert meta["num_updates"] == 4 and all(torch.isfinite(t).all() for t in tensors.values())


def test_resume_errors(tmp_path: Path) -> None:
    data = corpus(tmp_path / "data")
    with pytest.raises(S3LError, match="nothing to resume"):
        run(tmp_path / "a", data, resume=True)
    run(tmp_path / "b", data, max_updates=4)
    os.replace(tmp_path / "b" / STATE, tmp_path / "keep.pt")
    run(tmp_path / "b", data, max_updates=2)
    os.replace(tmp_path / "keep.pt", tmp_path / "b" / STATE)
    with pytest.raises(S3LError, match="weights are from update 2 but .* update 4"):
        run(tmp_path / "b", data, resume=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = distributed.init("cpu")
    data = corpus(Path(root) / "data", write=False)
    data = tuple(Data(d.dataset, BatchOrder(d.order.batches, seed=3, rank=rank, world=world, shuffle=d.order.shuffle))
                 for d in data)
    torch.manual_seed(0)
    model = StandIn(random=False)
    train(model, StandInTask(), data[0], data[1], config(update_freq=1, max_updates=5), Path(root) / "ddp", info)
    if rank == 0:
        torch.save(model.state_dict(), Path(root) / "ddp_weights.pt")
    distributed.shutdown()


def test_two_processes_equal_one_with_accumulation(tmp_path: Path) -> None:
    """2 gloo processes x 1 micro-batch average the same gradients as 1 process x 2 micro-batches."""
    assert len(corpus(tmp_path / "data")[0].order.batches) % 2 == 0  # else the 2-process order wraps around
    (tmp_path / "ddp").mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    ddp_state = torch.load(tmp_path / "ddp_weights.pt")
    torch.manual_seed(0)
    single = StandIn(random=False)
    (tmp_path / "one").mkdir()
    data = corpus(tmp_path / "data", write=False)
    train(single, StandInTask(), data[0], data[1], config(update_freq=2, max_updates=5), tmp_path / "one", CPU)
    for k, v in single.state_dict().items():
        assert torch.allclose(v, ddp_state[k], atol=1e-5), k
    assert (tmp_path / "ddp" / LAST).is_file() and len(read_jsonl(tmp_path / "ddp" / "train.jsonl")) == 3
