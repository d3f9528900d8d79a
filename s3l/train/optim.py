"""Adam with decoupled weight decay and the two learning-rate schedules of wav2vec 2.0 / HuBERT.

fairseq's ``adam`` optimizer is the AdamW variant (weight decay applied to the weights, not added to the
gradient), on every parameter; that is ``torch.optim.AdamW``. Schedules are pure functions of the number of
finished updates, so resuming needs only the update count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

# wav2vec 2.0 §4.2 / fairseq wav2vec2_base_librispeech.yaml and hubert_base_librispeech.yaml
ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-6
WEIGHT_DECAY = 0.01


def adam(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float = WEIGHT_DECAY,
         eps: float = ADAM_EPS) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (fairseq fine-tuning configs use eps 1e-8 and no weight decay)."""
    return torch.optim.AdamW(
        [p for p in params if p.requires_grad], lr=lr, betas=ADAM_BETAS, eps=eps, weight_decay=weight_decay
    )


@dataclass(frozen=True)
class LinearSchedule:
    """Linear warm-up to ``peak`` over ``warmup`` updates, then linear decay to 0 at ``total`` updates
    (fairseq ``polynomial_decay`` with power 1 and end learning rate 0; wav2vec 2.0 §4.2: warm-up over the
    first 8 % of updates)."""

    peak: float
    warmup: int
    total: int

    def __call__(self, n: int) -> float:
        """Learning rate of update ``n + 1`` (``n`` updates done)."""
        if n < self.warmup:
            return self.peak * (n + 1) / self.warmup
        if n >= self.total:
            return 0.0
        return self.peak * (1.0 - (n - self.warmup) / max(self.total - self.warmup, 1))

    def state_dict(self) -> dict:
        return {"name": "linear", **asdict(self)}


@dataclass(frozen=True)
class TriStageSchedule:
    """fairseq ``tri_stage`` (used for CTC fine-tuning, wav2vec 2.0 Appendix B): linear warm-up from
    ``init_scale * peak`` to ``peak``, hold, then exponential decay to ``final_scale * peak``; the stages take
    ``ratios`` of ``total`` updates (fairseq fine-tuning configs: (0.1, 0.4, 0.5), 0.01, 0.05)."""

    peak: float
    total: int
    ratios: tuple[float, float, float] = (0.1, 0.4, 0.5)
    init_scale: float = 0.01
    final_scale: float = 0.05

    def __post_init__(self) -> None:
        if abs(sum(self.ratios) - 1.0) > 1e-6:
            raise ValueError(f"tri-stage ratios must sum to 1, got {self.ratios}")

    def __call__(self, n: int) -> float:
        warm, hold = (int(r * self.total) for r in self.ratios[:2])
        decay = self.total - warm - hold
        init, final = self.init_scale * self.peak, self.final_scale * self.peak
        if n < warm:
            return init + (self.peak - init) * n / warm
        n -= warm
        if n < hold:
            return self.peak
        n -= hold
        if n < decay:
            return self.peak * math.exp(math.log(self.final_scale) * n / decay)
        return final

    def state_dict(self) -> dict:
        return {"name": "tri_stage", **asdict(self)}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
