"""wav2vec 2.0 pre-training model and its contrastive objective (wav2vec 2.0 §3; fairseq wav2vec2.py and
wav2vec_criterion.py).

For every masked time step t the transformer output c_t, projected to ``final_dim``, must pick the quantized latent
q_t among K distractors drawn uniformly from the other masked steps of the same utterance:

    L_m = -log exp(sim(c_t, q_t) / kappa) / sum_{q in {q_t} + Q_t} exp(sim(c_t, q) / kappa)

with cosine similarity and kappa = ``logit_temp``. A distractor identical to q_t (same codewords) is excluded
from the softmax. The total is  mean_t L_m + alpha * (GV - perplexity) / GV + lambda * mean(z^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s3l.errors import S3LError
from s3l.models.backbone import Backbone, PretrainOutput
from s3l.models.config import ModelConfig
from s3l.models.quantizer import GumbelVectorQuantizer, diversity_loss


def sample_negatives(
    batch: int, num: int, n_negatives: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(B, N, K) indices into the N masked steps of the same utterance, uniform over all but the positive t.

    fairseq's trick: draw from [0, N - 1) and shift every index >= t up by one, which skips t exactly.
    """
    idx = torch.randint(0, num - 1, (batch, num, n_negatives), device=device)
    t = torch.arange(num, device=device).view(1, num, 1)
    return idx + (idx >= t).long()


def contrastive_logits(
    x: torch.Tensor,
    y: torch.Tensor,
    neg_idx: torch.Tensor,
    same: torch.Tensor | None,
    logit_temp: float,
) -> torch.Tensor:
    """(B, N, 1 + K) fp32 logits; column 0 is the positive.

    x: (B, N, F) predictions; y: (B, N, F) targets; neg_idx: (B, N, K) indices into y's N axis;
    same: (B, N, N) bool, True where target j equals target t (those distractors get -inf), or None.
    """
    xn = F.normalize(x.float(), dim=-1, eps=1e-8)
    yn = F.normalize(y.float(), dim=-1, eps=1e-8)
    sim = torch.bmm(xn, yn.transpose(1, 2))  # (B, N, N): cos(x_t, y_j)
    pos = sim.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # (B, N, 1)
    neg = sim.gather(2, neg_idx)  # (B, N, K)
    if same is not None:
        neg = neg.masked_fill(same.gather(2, neg_idx), float("-inf"))
    return torch.cat([pos, neg], dim=-1) / logit_temp


def contrastive_accuracy(logits: torch.Tensor) -> tuple[int, int]:
    """(correct, count) as fairseq: argmax is the positive, excluding rows where every logit is equal."""
    flat = logits.reshape(-1, logits.size(-1))
    if flat.numel() == 0:
        return 0, 0
    is_max = flat.argmax(-1) == 0
    is_min = flat.argmin(-1) == 0
    return int((is_max & ~is_min).sum()), flat.size(0)


class Wav2Vec2Model(nn.Module):
    """Backbone + Gumbel quantizer + projections; ``forward`` returns the normalised contrastive loss."""

    kind = "wav2vec2"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.objective != "contrastive":
            raise S3LError(f"Wav2Vec2Model needs objective 'contrastive', got {cfg.objective!r}")
        self.config = cfg
        self.backbone = Backbone(cfg)
        self.dropout_features = nn.Dropout(cfg.dropout_features)
        self.quantizer = GumbelVectorQuantizer(
            cfg.feature_dim, cfg.latent_vars, cfg.latent_groups, cfg.vq_dim, cfg.latent_temp
        )
        self.project_q = nn.Linear(cfg.vq_dim, cfg.final_dim)
        self.final_proj = nn.Linear(cfg.encoder_embed_dim, cfg.final_dim)

    def set_num_updates(self, num_updates: int) -> None:
        """Anneal the Gumbel temperature: max(tau_max * decay**num_updates, tau_min)."""
        self.quantizer.set_num_updates(num_updates)

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.backbone.hidden_states(wave, lengths)

    def forward(
        self,
        wave: torch.Tensor,
        lengths: torch.Tensor | None = None,
        targets: list[torch.Tensor] | None = None,
    ) -> PretrainOutput:
        """wave: (B, S) float; lengths: (B,) samples. ``targets`` is unused (the targets are quantized latents)."""
        cfg = self.config
        out = self.backbone(wave, lengths, mask=True)
        mask = out.mask_indices
        if mask is None:
            raise S3LError("contrastive pre-training needs mask_prob > 0")
        B = mask.size(0)
        N = int(mask[0].sum())  # every row has the same number of masked steps (require_same_masks)
        if N < 2:
            raise S3LError(
                f"only {N} masked frame(s) per utterance: the batch is too short for the contrastive task "
                "(raise --min-sample-size)"
            )

        unmasked = self.dropout_features(out.features)  # (B, T, C)
        q = self.quantizer(unmasked[mask].view(B, N, -1))  # targets: quantized latents of the masked steps
        y = self.project_q(q.x.to(unmasked.dtype))  # (B, N, F)
        x = self.final_proj(out.x[mask].view(B, N, -1))  # (B, N, F)

        neg_idx = sample_negatives(B, N, cfg.num_negatives, device=x.device)
        same = (q.codes.unsqueeze(2) == q.codes.unsqueeze(1)).all(-1)  # (B, N, N) identical codewords
        logits = contrastive_logits(x, y, neg_idx, same, cfg.logit_temp)  # (B, N, 1 + K) fp32

        sample_size = B * N
        ce = F.cross_entropy(logits.view(-1, logits.size(-1)), logits.new_zeros(sample_size, dtype=torch.long),
                             reduction="sum")
        div = diversity_loss(q.prob_perplexity, self.quantizer.num_codewords)
        pen = out.features_pen
        # fairseq: CE summed over masked frames plus coef * term * sample_size, all divided by sample_size.
        loss = ce / sample_size
        if cfg.diversity_weight:
            loss = loss + cfg.diversity_weight * div
        if cfg.feature_pen_weight:
            loss = loss + cfg.feature_pen_weight * pen

        correct, count = contrastive_accuracy(logits.detach())
        logs = {
            "loss": float(loss.detach()),
            "contrastive_loss": float(ce.detach()) / sample_size,
            "diversity_loss": float(div.detach()),
            "features_pen": float(pen.detach()),
            "accuracy": correct / max(count, 1),
            "code_perplexity": float(q.code_perplexity),
            "prob_perplexity": float(q.prob_perplexity.detach()),
            "temperature": float(q.temperature),
            "sample_size": float(sample_size),
        }
        return PretrainOutput(loss=loss, logs=logs)
