"""CTC fine-tuning model (wav2vec 2.0 §3.3, Appendix B; fairseq wav2vec2_asr.py ``Wav2VecCtc``).

The pre-trained backbone (quantizer and pre-training heads dropped) followed by dropout and a randomly initialised
linear layer over the vocabulary (``vocab[0] == "<blank>"``, then the symbols of dict.ltr.txt, ``|`` = word
boundary). In train mode time masks and channel masks are applied as configured (see
:func:`s3l.models.config.finetune_preset`). The feature encoder is usually frozen; the whole backbone can be frozen
for the first updates (fairseq ``freeze_finetune_updates``) with :meth:`CTCModel.set_transformer_frozen`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s3l.errors import S3LError
from s3l.models.backbone import Backbone
from s3l.models.config import ModelConfig
from s3l.vocab import check_vocab


class CTCModel(nn.Module):
    kind = "ctc"

    def __init__(self, cfg: ModelConfig, vocab: list[str]) -> None:
        super().__init__()
        self.config = cfg
        self.vocab = check_vocab(vocab, words=False)
        self.backbone = Backbone(cfg)
        self.final_dropout = nn.Dropout(cfg.final_dropout)
        self.proj = nn.Linear(cfg.encoder_embed_dim, len(self.vocab))
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        if cfg.feature_grad_mult == 0.0:
            self.freeze_feature_encoder()

    @classmethod
    def from_pretrained(cls, model: nn.Module, vocab: list[str], cfg: ModelConfig | None = None) -> CTCModel:
        """A CTC model on ``model``'s backbone (weights copied); ``cfg`` (default ``model.config``) may change
        masking / dropout / LayerDrop, e.g. ``finetune_preset("10min").apply(model.config)``, not the shapes."""
        cfg = cfg if cfg is not None else model.config
        ctc = cls(cfg, vocab)
        try:
            ctc.backbone.load_state_dict(model.backbone.state_dict())
        except RuntimeError as e:
            raise S3LError(f"the fine-tuning config does not match the pre-trained architecture ({e})") from None
        return ctc.to(next(model.parameters()).device)

    def freeze_feature_encoder(self) -> None:
        """No gradient into the convolutional feature encoder (fairseq feature_grad_mult 0)."""
        self.backbone.feature_grad_mult = 0.0
        self.backbone.feature_extractor.requires_grad_(False)

    def set_transformer_frozen(self, frozen: bool) -> None:
        """While frozen only the output layer trains: the backbone runs without gradients (--freeze-updates)."""
        self.backbone.frozen = bool(frozen)

    def hidden_states(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.backbone.hidden_states(wave, lengths)

    def forward(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wave: (B, S); lengths: (B,) -> (log_probs (B, T, V) fp32, out_lengths (B,) long)."""
        out = self.backbone(wave, lengths, mask=self.training)
        logits = self.proj(self.final_dropout(out.x))  # (B, T, V)
        return F.log_softmax(logits.float(), dim=-1), out.frame_lengths
