"""The part every model shares: feature encoder -> LayerNorm -> projection -> masking -> transformer.

wav2vec 2.0 §2-3 and fairseq ``Wav2Vec2Model.forward`` up to the transformer output. The pre-training models
(:mod:`s3l.models.wav2vec2`, :mod:`s3l.models.hubert`) and the CTC model (:mod:`s3l.models.ctc`) each own one
:class:`Backbone` under the attribute ``backbone``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from s3l.models.config import ModelConfig
from s3l.models.feature_encoder import FeatureEncoder, GradMultiply, LogMelFrontEnd, length_mask, normalize_waveform
from s3l.models.masking import compute_mask_indices
from s3l.models.transformer import TransformerEncoder


@dataclass
class PretrainOutput:
    """What a pre-training model's ``forward`` returns."""

    loss: torch.Tensor  # scalar, already normalised: mean over predicted frames plus the weighted extra terms
    logs: dict[str, float] = field(default_factory=dict)


@dataclass
class BackboneOutput:
    x: torch.Tensor  # (B, T, D) transformer output
    padding_mask: torch.Tensor  # (B, T) bool, True = padding
    frame_lengths: torch.Tensor  # (B,) valid frames per utterance
    features: torch.Tensor  # (B, T, C) layer-normed feature encoder output, before projection and masking
    features_pen: torch.Tensor  # scalar: mean squared feature encoder output over valid frames
    mask_indices: torch.Tensor | None  # (B, T) bool, True = time step replaced by the mask embedding
    states: list[torch.Tensor]  # transformer input and every block's output (only when requested)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.encoder_embed_dim
        C = cfg.feature_dim
        self.feature_extractor: FeatureEncoder | LogMelFrontEnd = (
            FeatureEncoder(cfg.conv_dim, cfg.conv_kernels, cfg.conv_strides, cfg.extractor_mode, cfg.conv_bias)
            if cfg.front_end == "conv" else LogMelFrontEnd(cfg.mel_bins)
        )
        self.layer_norm = nn.LayerNorm(C)
        self.post_extract_proj = nn.Linear(C, D) if C != D else None
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.mask_emb = nn.Parameter(torch.empty(D).uniform_())
        self.encoder = TransformerEncoder(
            dim=D,
            ffn_dim=cfg.encoder_ffn_embed_dim,
            layers=cfg.encoder_layers,
            heads=cfg.encoder_attention_heads,
            conv_pos=cfg.conv_pos,
            conv_pos_groups=cfg.conv_pos_groups,
            dropout=cfg.dropout,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            layerdrop=cfg.encoder_layerdrop,
            layer_norm_first=cfg.layer_norm_first,
        )
        self.feature_grad_mult = cfg.feature_grad_mult
        self.frozen = False  # set by CTCModel.set_transformer_frozen: run everything without gradients

    @property
    def hop(self) -> int:
        """Samples per output frame (320)."""
        hop = 1
        for s in self.cfg.conv_strides:
            hop *= s
        return hop

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) sample counts -> (B,) frame counts."""
        return self.feature_extractor.output_lengths(lengths)

    def extract_features(
        self, wave: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveform -> ((B, C, T) conv features, (B,) valid frames). Gradients scaled by feature_grad_mult."""
        if lengths is None:
            lengths = torch.full((wave.size(0),), wave.size(1), dtype=torch.long, device=wave.device)
        lengths = lengths.to(wave.device)
        if self.cfg.normalize_waveform:
            wave = normalize_waveform(wave, lengths)
        if self.feature_grad_mult > 0:
            feats, frames = self.feature_extractor(wave, lengths)
            if self.feature_grad_mult != 1.0 and feats.requires_grad:
                feats = GradMultiply.apply(feats, self.feature_grad_mult)
        else:
            with torch.no_grad():
                feats, frames = self.feature_extractor(wave, lengths)
        return feats, frames

    def encode(
        self,
        feats: torch.Tensor,
        frame_lengths: torch.Tensor,
        mask: bool = False,
        return_all: bool = False,
    ) -> BackboneOutput:
        """(B, C, T) conv features -> transformer output; ``mask`` applies time (and channel) masking."""
        B, C, T = feats.shape
        valid = length_mask(frame_lengths, T)  # (B, T)
        if self.cfg.front_end == "conv":
            v = valid.unsqueeze(1).to(torch.float32)
            features_pen = (feats.float().pow(2) * v).sum() / (v.sum() * C).clamp(min=1.0)
        else:  # the L2 penalty keeps a trained encoder's output small; log-mel features have no weights
            features_pen = feats.new_zeros((), dtype=torch.float32)

        features = self.layer_norm(feats.transpose(1, 2))  # (B, T, C)
        x = self.post_extract_proj(features) if self.post_extract_proj is not None else features
        x = self.dropout_input(x)  # (B, T, D)

        mask_indices = None
        if mask:
            x, mask_indices = self.apply_mask(x, frame_lengths)
        padding_mask = ~valid
        x, states = self.encoder(x, padding_mask, return_all=return_all)
        return BackboneOutput(x, padding_mask, frame_lengths, features, features_pen, mask_indices, states)

    def apply_mask(self, x: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Replace masked time steps by the learned mask embedding and zero masked channels. x: (B, T, D)."""
        cfg = self.cfg
        B, T, D = x.shape
        # Draw the numpy seed from torch's generator so torch.manual_seed (and a resumed RNG state) reproduce masks.
        rng = torch.randint(0, 2**62, (1,)).item()
        mask_indices = None
        if cfg.mask_prob > 0:
            m = compute_mask_indices(
                B, T, cfg.mask_prob, cfg.mask_length, cfg.mask_min_masks,
                lengths=frame_lengths.cpu().numpy(), seed=rng,
            )
            mask_indices = torch.from_numpy(m).to(x.device)
            x = torch.where(mask_indices.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        if cfg.mask_channel_prob > 0:
            c = compute_mask_indices(B, D, cfg.mask_channel_prob, cfg.mask_channel_length, 0, seed=rng + 1)
            x = x.masked_fill(torch.from_numpy(c).to(x.device).unsqueeze(1), 0.0)
        return x, mask_indices

    def forward(
        self, wave: torch.Tensor, lengths: torch.Tensor | None = None, mask: bool = False, return_all: bool = False
    ) -> BackboneOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            feats, frames = self.extract_features(wave, lengths)
            return self.encode(feats, frames, mask=mask, return_all=return_all)

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Transformer input (index 0) and the output of every block n (index n), each (B, T, D); eval, no mask.

        Block outputs are taken before the final LayerNorm of pre-LN models, as fairseq's ``output_layer`` and
        torchaudio's ``extract_features``; the encoder output proper is ``forward(...).x``.
        """
        was_training = self.training
        self.eval()
        try:
            return self.forward(wave, lengths, mask=False, return_all=True).states
        finally:
            self.train(was_training)
