"""HuBERT pre-training model and objective (HuBERT §II-B..D; fairseq hubert.py and hubert_criterion.py).

The transformer output at each frame, projected to ``final_dim`` (one untied projection per label set), is scored
against a learned embedding of every unit by cosine similarity / 0.1; cross entropy with the frame's unit gives
L_m over masked frames and L_u over unmasked ones, combined as ``alpha * L_m + (1 - alpha) * L_u``.

Labels at ``label_rate`` Hz are mapped onto the 50 Hz frames by fairseq's rule: frame t takes label
``int(t * ratio)`` with ``ratio = label_rate * 320 / 16000`` (2 for 100 Hz MFCC units, 1 for 50 Hz layer units),
and the features are cut to ``int(label_len / ratio)`` frames when the labels are shorter.
Labels are (B, T_lab) long tensors; pad them with -1 (negative labels are ignored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s3l.audio import SAMPLE_RATE
from s3l.errors import S3LError
from s3l.models.backbone import Backbone, PretrainOutput
from s3l.models.config import ModelConfig


def align_labels(
    feats: torch.Tensor,
    frame_lengths: torch.Tensor,
    targets: list[torch.Tensor],
    ratios: list[float],
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Map label sequences onto feature frames (fairseq ``forward_targets``), cutting the features if needed.

    feats: (B, C, T); targets[i]: (B, T_lab_i); returns feats (B, C, T'), frame lengths, targets[i] (B, T').
    """
    T = feats.size(2)
    for t, r in zip(targets, ratios):
        if r * T > t.size(1):
            T = int(t.size(1) / r)
    feats = feats[..., :T]
    frame_lengths = frame_lengths.clamp(max=T)
    aligned = []
    for t, r in zip(targets, ratios):
        idx = (torch.arange(T, dtype=torch.float64) * r).long().to(t.device)
        aligned.append(t.index_select(1, idx))
    return feats, frame_lengths, aligned


def label_logits(proj: torch.Tensor, label_embs: torch.Tensor, logit_temp: float) -> torch.Tensor:
    """(N, F) projections x (K, F) embeddings -> (N, K) fp32 cosine similarities / logit_temp.

    Equal to fairseq's ``compute_nce`` with every unit as a candidate (its positive-duplicate set to -inf).
    """
    p = F.normalize(proj.float(), dim=-1, eps=1e-8)
    e = F.normalize(label_embs.float(), dim=-1, eps=1e-8)
    return p @ e.t() / logit_temp


class HubertModel(nn.Module):
    """Backbone + per-label-set projections + unit embeddings; ``forward`` returns the normalised HuBERT loss."""

    kind = "hubert"

    def __init__(self, cfg: ModelConfig, num_classes: list[int]) -> None:
        super().__init__()
        if cfg.objective != "hubert":
            raise S3LError(f"HubertModel needs objective 'hubert', got {cfg.objective!r}")
        num_classes = [int(k) for k in num_classes]
        if len(num_classes) != len(cfg.label_rates):
            raise S3LError(
                f"{len(num_classes)} label set(s) given but the config has {len(cfg.label_rates)} label rate(s)"
            )
        if any(k < 1 for k in num_classes):
            raise S3LError("every label set needs at least one unit")
        self.config = cfg
        self.num_classes = num_classes
        self.backbone = Backbone(cfg)
        # One projection per label set, stored as one Linear whose output is split (fairseq untie_final_proj).
        self.final_proj = nn.Linear(cfg.encoder_embed_dim, cfg.final_dim * len(num_classes))
        self.label_embs_concat = nn.Parameter(torch.empty(sum(num_classes), cfg.final_dim).uniform_())

    @property
    def label_ratios(self) -> list[float]:
        """Labels per model frame for each set (label_rate * 320 / 16000)."""
        return [r * self.backbone.hop / SAMPLE_RATE for r in self.config.label_rates]

    def set_num_updates(self, num_updates: int) -> None:
        """No schedule in HuBERT (kept for the shared training loop)."""

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.backbone.hidden_states(wave, lengths)

    def forward(
        self,
        wave: torch.Tensor,
        lengths: torch.Tensor | None = None,
        targets: list[torch.Tensor] | None = None,
    ) -> PretrainOutput:
        """wave: (B, S); lengths: (B,) samples; targets: one (B, T_lab) long tensor per label set (-1 = padding)."""
        cfg = self.config
        if targets is None or len(targets) != len(self.num_classes):
            raise S3LError(f"HuBERT pre-training needs {len(self.num_classes)} label tensor(s)")
        bb = self.backbone
        feats, frames = bb.extract_features(wave, lengths)
        feats, frames, labels = align_labels(feats, frames, [t.to(feats.device) for t in targets], self.label_ratios)
        for i, (lab, k) in enumerate(zip(labels, self.num_classes)):
            if lab.numel() and int(lab.max()) >= k:
                raise S3LError(f"label set {i}: unit {int(lab.max())} is out of range for K={k} units")
        out = bb.encode(feats, frames, mask=True)

        valid = ~out.padding_mask
        for lab in labels:
            valid = valid & (lab >= 0)
        masked = valid & out.mask_indices if out.mask_indices is not None else torch.zeros_like(valid)
        unmasked = valid & ~masked

        alpha = cfg.masked_weight
        embs = self.label_embs_concat.split(self.num_classes, 0)
        logs: dict[str, float] = {}
        total = out.x.new_zeros((), dtype=torch.float32)
        sample_size = 0
        for part, sel, weight in (("masked", masked, alpha), ("unmasked", unmasked, 1.0 - alpha)):
            n = int(sel.sum())
            if weight > 0:
                sample_size += n
            with torch.set_grad_enabled(torch.is_grad_enabled() and weight > 0):
                projs = self.final_proj(out.x[sel]).chunk(len(self.num_classes), dim=-1)  # each (n, F)
                for i, (proj, lab) in enumerate(zip(projs, labels)):
                    logits = label_logits(proj, embs[i], cfg.logit_temp)  # (n, K_i)
                    tgt = lab[sel]
                    ce = F.cross_entropy(logits, tgt, reduction="sum") if n else logits.sum() * 0.0
                    if weight > 0:
                        total = total + weight * ce
                    sfx = "" if len(self.num_classes) == 1 else f"_{i}"
                    logs[f"loss_{part}{sfx}"] = float(ce.detach()) / max(n, 1)
                    logs[f"acc_{part}{sfx}"] = float((logits.argmax(-1) == tgt).sum()) / max(n, 1)
            logs[f"frames_{part}"] = float(n)
        # fairseq hubert_criterion: (weighted CE sums + coef * penalty * sample_size) / sample_size
        loss = total / max(sample_size, 1)
        if cfg.feature_pen_weight:
            loss = loss + cfg.feature_pen_weight * out.features_pen
        logs["loss"] = float(loss.detach())
        logs["features_pen"] = float(out.features_pen.detach())
        logs["sample_size"] = float(sample_size)
        return PretrainOutput(loss=loss, logs=logs)
