"""s3l.train.optim: schedules against hand-worked values; Adam is fairseq's decoupled-weight-decay Adam."""

from __future__ import annotations

import math

import pytest
import torch

from s3l.train.optim import LinearSchedule, TriStageSchedule, adam


def test_linear_warmup_then_linear_decay() -> None:
    s = LinearSchedule(peak=1.0, warmup=4, total=12)
    assert [s(n) for n in range(13)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0])
    assert s(50) == 0.0
    base = LinearSchedule(peak=5e-4, warmup=32_000, total=400_000)  # wav2vec 2.0 BASE
    assert base(31_999) == pytest.approx(5e-4) and base(216_000) == pytest.approx(2.5e-4)


def test_tri_stage() -> None:
    s = TriStageSchedule(peak=1.0, total=100)  # stages of 10, 40 and 50 updates
    assert s(0) == pytest.approx(0.01) and s(5) == pytest.approx(0.505)
    assert s(10) == s(49) == 1.0
    assert s(75) == pytest.approx(math.sqrt(0.05))  # halfway through the exponential decay from 1 to 0.05
    assert s(100) == s(1000) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        TriStageSchedule(peak=1.0, total=10, ratios=(0.5, 0.5, 0.5))


def test_adam_is_decoupled_weight_decay_with_paper_settings() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = adam([p], lr=0.1)
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-6
    p.grad = torch.tensor([0.5, 0.25])
    opt.step()
    # first step: m_hat = g, v_hat = g^2, so the Adam step is lr * g / (|g| + eps); decay lr * wd * p separately
    g = torch.tensor([0.5, 0.25])
    want = torch.tensor([1.0, -2.0]) * (1 - 0.1 * 0.01) - 0.1 * g / (g.abs() + 1e-6)
    assert torch.allclose(p.detach(), want, atol=1e-7)
