"""Transformer context network (wav2vec 2.0 §2): convolutional relative positional embedding + encoder blocks.

Blocks are post-LN (BASE) or pre-LN with a final LayerNorm (``layer_norm_first``, LARGE), as in fairseq's
``TransformerEncoder``. Attention uses ``scaled_dot_product_attention`` with a key padding mask. LayerDrop skips
whole blocks in training. Parameter names follow fairseq (``self_attn.q_proj``, ``self_attn_layer_norm``, ``fc1``,
``final_layer_norm``, ...), which keeps checkpoint conversion a renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PositionalConv(nn.Module):
    """Grouped Conv1d over time (kernel 128, 16 groups), weight norm over dim 2, "same" padding, GELU."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel_size=kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel * dim)))
        nn.init.zeros_(conv.bias)
        # weight = g * v / ||v||, the norm taken over every dim but 2 (one g per kernel tap), as fairseq.
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.remove_last = kernel % 2 == 0  # an even kernel with padding k//2 yields one extra frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        y = self.conv(x.transpose(1, 2))
        if self.remove_last:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (fairseq / Hugging Face layout)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, T, D); attn_mask: (B, 1, 1, T) bool, True = key may be attended, or None."""
        B, T, D = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, h, D // h).transpose(1, 2)  # (B, H, T, D/H)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, H, T, D/H)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class EncoderLayer(nn.Module):
    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        layer_norm_first: bool,
    ) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.layer_norm_first = layer_norm_first

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:  # (B, T, D)
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), attn_mask))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, attn_mask)))
        return self.final_layer_norm(x + self._ffn(x))


class TransformerEncoder(nn.Module):
    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        layers: int,
        heads: int,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
        activation_dropout: float = 0.0,
        layerdrop: float = 0.0,
        layer_norm_first: bool = False,
    ) -> None:
        super().__init__()
        self.pos_conv = PositionalConv(dim, conv_pos, conv_pos_groups)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, ffn_dim, heads, dropout, attention_dropout, activation_dropout, layer_norm_first)
            for _ in range(layers)
        )
        # Post-LN: applied to the input of the first block. Pre-LN: applied to the output of the last block.
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layerdrop = layerdrop
        self.layer_norm_first = layer_norm_first
        self.apply(_init_bert_params)

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor | None = None, return_all: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x: (B, T, D); padding_mask: (B, T) bool, True = padding.

        Returns the encoder output (B, T, D) (final LayerNorm included for pre-LN) and, with ``return_all``, the
        input of the first block followed by the output of every block (before the final LayerNorm).
        """
        attn_mask = None
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)  # padded frames must not leak into the pos conv
            if padding_mask.any():
                attn_mask = (~padding_mask)[:, None, None, :]  # (B, 1, 1, T)
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        states = [x] if return_all else []
        for layer in self.layers:
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, attn_mask)
            if return_all:
                states.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, states


def _init_bert_params(module: nn.Module) -> None:
    """fairseq ``init_bert_params``: every Linear of the encoder ~ N(0, 0.02), zero bias."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
