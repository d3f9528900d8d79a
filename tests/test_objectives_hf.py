"""s3l's wav2vec 2.0 objective equals Hugging Face ``Wav2Vec2ForPreTraining``: contrastive loss, diversity loss,
codebook perplexity and the gradient of the total loss, for the same weights, mask, distractors and Gumbel noise.

Differences in convention, accounted for below:
- HF returns sums over the M masked frames: ``contrastive_loss`` = CE summed, ``diversity_loss`` = (GV - ppl) / GV * M,
  ``loss`` = their weighted sum. s3l (as fairseq's criterion divided by its sample size) returns means: loss = CE / M
  + diversity_weight * (GV - ppl) / GV + feature_pen_weight * features_pen. HF has no feature penalty, so it is set
  to 0 here; then s3l's loss equals HF's loss / M.
- s3l multiplies the feature encoder's gradients by ``feature_grad_mult`` (fairseq's GradMultiply, 0.1 by default);
  HF has no such factor, so the conv layers' gradients differ by exactly that factor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_convert_hf import _load, _save
from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining

import s3l.models.backbone as s3l_backbone
import s3l.models.wav2vec2 as s3l_wav2vec2
from s3l.convert.common import rename_keys
from s3l.convert.hf import _IMPORT
from s3l.models.masking import compute_mask_indices

TOL = 1e-4
NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  feat_quantizer_dropout=0.0, final_dropout=0.0, layerdrop=0.0)
# conv_dim != hidden_size: with equal widths s3l (like fairseq) drops the feature projection, HF keeps it.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, codevector_dim=24, proj_codevector_dim=20,
            num_codevectors_per_group=7, num_codevector_groups=2, num_negatives=5, mask_time_prob=0.05,
            diversity_loss_weight=0.1, contrastive_logits_temperature=0.1, **NO_DROPOUT)


def _pair(tmp_path: Path):
    """A random HF Wav2Vec2ForPreTraining and the same weights loaded into s3l, both in training mode."""
    torch.manual_seed(0)
    hf_model = Wav2Vec2ForPreTraining(Wav2Vec2Config(**TINY))
    with torch.no_grad():  # move LayerNorm gains / zero biases off their initial values so every weight matters
        for p in hf_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model = _load(_save(hf_model.eval(), tmp_path))
    cfg = model.config
    assert (cfg.latent_vars, cfg.latent_groups, cfg.vq_dim, cfg.final_dim, cfg.num_negatives) == (7, 2, 24, 20, 5)
    assert (cfg.diversity_weight, cfg.logit_temp, cfg.encoder_layerdrop) == (0.1, 0.1, 0.0)
    assert cfg.dropout == cfg.attention_dropout == cfg.activation_dropout == 0.0
    assert cfg.dropout_input == cfg.dropout_features == cfg.mask_channel_prob == 0.0
    model.config = cfg.replace(feature_pen_weight=0.0)  # HF has no feature L2 penalty
    assert model.quantizer.curr_temp == hf_model.quantizer.temperature == 2  # same Gumbel softmax temperature
    return hf_model.train(), model.train()


def test_contrastive_and_diversity_losses_and_gradients_match_hf(tmp_path: Path, monkeypatch) -> None:
    hf_model, model = _pair(tmp_path)
    B, K = 2, model.config.num_negatives
    wave = torch.randn(B, 16000)  # 1 s -> 49 frames
    T = int(model.backbone.output_lengths(torch.tensor([16000]))[0])

    # Fixed time mask: real wav2vec 2.0 spans (p = 0.065, M = 10), the same number of frames in every row.
    mask = compute_mask_indices(B, T, 0.65, 10, 2, seed=0)
    M = int(mask.sum())
    N = M // B
    assert (mask.sum(1) == N).all() and 5 < N < T
    calls = []

    def fixed_mask(batch, frames, *args, **kwargs):
        calls.append((batch, frames))
        return mask.copy()

    monkeypatch.setattr(s3l_backbone, "compute_mask_indices", fixed_mask)

    # Fixed distractors: s3l's (B, N, K) indices into the N masked steps of each utterance; HF's (B, T, K) indices
    # into the flattened B*T frames (rows of unmasked frames are ignored by HF's loss; 0 is as good as any).
    torch.manual_seed(1)
    neg = s3l_wav2vec2.sample_negatives(B, N, K)
    steps = torch.from_numpy(np.stack([np.flatnonzero(row) for row in mask]))  # (B, N) frame of each masked step
    hf_neg = torch.zeros(B, T, K, dtype=torch.long)
    for b in range(B):
        hf_neg[b, steps[b]] = steps[b][neg[b]] + b * T
    monkeypatch.setattr(s3l_wav2vec2, "sample_negatives", lambda *args, **kwargs: neg.clone())

    # Gumbel noise: HF quantizes every frame, s3l only the masked ones, so the two draw different numbers of
    # variates and no seed makes their noise equal. Both draw it the same way, -log(Exponential(1)) (torch's
    # F.gumbel_softmax and s3l's gumbel_softmax_st), so make every Exponential(1) draw exactly 1: the Gumbel noise
    # is exactly 0, the hard choice is the arg-max of the logits and the straight-through gradient is that of
    # softmax(logits / tau) on both sides, while the real quantizer code of both runs unchanged.
    monkeypatch.setattr(torch.Tensor, "exponential_", lambda self, *args, **kwargs: self.fill_(1.0))

    hf_out = hf_model(wave, mask_time_indices=torch.from_numpy(mask), sampled_negative_indices=hf_neg)
    hf_total = hf_out.loss / M  # HF sums over masked frames; s3l averages
    hf_total.backward()
    out = model(wave)
    out.loss.backward()
    logs = out.logs
    assert calls == [(B, T)]  # the fixed mask was used, once (no channel masking)
    assert logs["sample_size"] == M

    # The -inf path (a distractor with the positive's codewords) is exercised: 7 x 7 codewords for 2 x N steps.
    with torch.no_grad():  # (the Gumbel noise is 0, so these are the codewords the loss used)
        codes = model.quantizer(model.backbone(wave).features[torch.from_numpy(mask)].view(B, N, -1)).codes
    same = (codes.unsqueeze(2) == codes.unsqueeze(1)).all(-1).gather(2, neg)
    assert same.any()

    diffs = {
        "contrastive": abs(logs["contrastive_loss"] - float(hf_out.contrastive_loss.detach()) / M),
        "diversity": abs(logs["diversity_loss"] - float(hf_out.diversity_loss.detach()) / M),  # HF's is x M already
        "perplexity": abs(logs["prob_perplexity"] - float(hf_out.codevector_perplexity.detach())),
        "total": abs(float(out.loss.detach()) - float(hf_total.detach())),
    }
    assert logs["features_pen"] > 0 and logs["loss"] == pytest.approx(
        logs["contrastive_loss"] + 0.1 * logs["diversity_loss"], abs=1e-6)  # feature penalty weight is 0
    assert max(diffs.values()) <= TOL, diffs

    # Gradient of the total loss for every parameter, mapped to s3l names by the importer's own rules.
    hf_grads = rename_keys({k: p.grad for k, p in hf_model.named_parameters()}, _IMPORT, "hf", "grads")
    ours = dict(model.named_parameters())
    assert set(hf_grads) == set(ours)
    mult = model.backbone.feature_grad_mult
    assert mult == 0.1  # s3l's default for pre-training (fairseq BASE); the HF config has no such field
    worst = {}
    for name, p in ours.items():
        want = hf_grads[name] * (mult if name.startswith("backbone.feature_extractor.") else 1.0)
        assert p.grad is not None and want is not None, name
        if name.endswith("self_attn.k_proj.bias"):
            # q . b_k is the same for every key, so softmax cancels it: the true gradient is 0, both are round-off.
            assert float(p.grad.abs().max()) <= 1e-6 and float(want.abs().max()) <= 1e-6, name
            continue
        scale = float(want.abs().max())
        assert scale > 0, name
        worst[name] = float((p.grad - want).abs().max()) / scale
    assert max(worst.values()) <= TOL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]
    for key in ("quantizer.weight_proj.weight", "quantizer.vars", "project_q.weight", "final_proj.weight",
                "backbone.mask_emb"):
        assert key in worst
