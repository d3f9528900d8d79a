"""Gumbel-softmax product quantizer (wav2vec 2.0 §2 "Quantization module", §3.2 diversity loss).

G codebooks of V entries; a linear layer maps a feature to G x V logits, a straight-through Gumbel softmax picks one
entry per codebook (hard one-hot forward, soft gradient backward), and the chosen entries are concatenated. The
temperature anneals as ``max(tau_max * decay**update, tau_min)``. Everything here runs in fp32, autocast or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizerOutput:
    x: torch.Tensor  # (..., G * d) quantized vectors, fp32
    codes: torch.Tensor  # (..., G) chosen entry per codebook
    code_perplexity: torch.Tensor  # scalar: sum over codebooks of the perplexity of the hard (argmax) choices
    prob_perplexity: torch.Tensor  # scalar: sum over codebooks of the perplexity of the batch-averaged softmax
    temperature: float


def gumbel_softmax_st(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Straight-through Gumbel softmax over the last dim: one-hot forward, gradient of the soft sample backward."""
    gumbels = -torch.empty_like(logits).exponential_().log()  # Gumbel(0, 1) noise
    soft = ((logits + gumbels) / tau).softmax(-1)
    hard = F.one_hot(soft.argmax(-1), logits.size(-1)).to(soft.dtype)
    return hard - soft.detach() + soft


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """(G, V) distributions -> sum over G of exp(entropy), as fairseq (with its 1e-7 inside the log)."""
    return torch.exp(-(probs * torch.log(probs + 1e-7)).sum(-1)).sum()


class GumbelVectorQuantizer(nn.Module):
    def __init__(
        self, input_dim: int, num_vars: int, groups: int, vq_dim: int, temp: tuple[float, float, float]
    ) -> None:
        super().__init__()
        if vq_dim % groups:
            raise ValueError("vq_dim must be divisible by groups")
        self.num_vars = num_vars
        self.groups = groups
        self.vars = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups).uniform_())  # codebooks
        self.weight_proj = nn.Linear(input_dim, groups * num_vars)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        self.max_temp, self.min_temp, self.temp_decay = (float(t) for t in temp)
        self.curr_temp = self.max_temp

    @property
    def num_codewords(self) -> int:
        """G * V, the maximum total perplexity."""
        return self.groups * self.num_vars

    def temperature_at(self, num_updates: int) -> float:
        return max(self.max_temp * self.temp_decay**num_updates, self.min_temp)

    def set_num_updates(self, num_updates: int) -> None:
        self.curr_temp = self.temperature_at(num_updates)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:  # x: (..., C)
        lead = x.shape[:-1]
        G, V = self.groups, self.num_vars
        with torch.autocast(x.device.type, enabled=False):
            logits = F.linear(x.float().reshape(-1, x.size(-1)), self.weight_proj.weight.float(),
                              self.weight_proj.bias.float()).view(-1, G, V)  # (N, G, V)
            with torch.no_grad():
                hard_probs = F.one_hot(logits.argmax(-1), V).float().mean(0)  # (G, V)
                code_ppl = perplexity(hard_probs)
            prob_ppl = perplexity(logits.softmax(-1).mean(0))
            if self.training:
                onehot = gumbel_softmax_st(logits, self.curr_temp)
            else:
                onehot = F.one_hot(logits.argmax(-1), V).float()
            codes = onehot.argmax(-1)  # (N, G)
            books = self.vars.float().view(G, V, -1)  # (G, V, d)
            q = torch.einsum("ngv,gvd->ngd", onehot, books).reshape(*lead, -1)
        return QuantizerOutput(q, codes.view(*lead, G), code_ppl, prob_ppl, self.curr_temp)


def diversity_loss(prob_perplexity: torch.Tensor, num_codewords: int) -> torch.Tensor:
    """(GV - perplexity) / GV: 0 when every codeword is used equally, (GV - G) / GV when each codebook collapses."""
    return (num_codewords - prob_perplexity) / num_codewords

