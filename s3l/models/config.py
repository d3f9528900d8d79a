"""Model configuration: one frozen dataclass for every architecture and objective field, plus the papers' presets.

Field names follow fairseq's ``Wav2Vec2Config`` / ``HubertConfig`` so that a fairseq or Hugging Face config maps
onto this one field by field. Masking probabilities use fairseq's convention: ``mask_prob`` is the expected
fraction of frames covered by spans (the paper's start probability p times the span length M), see
:func:`s3l.models.masking.compute_mask_indices`.

This module imports neither torch nor numpy, so the CLI can build configs without paying for torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from s3l.errors import S3LError
from s3l.models.objectives import OBJECTIVES

EXTRACTOR_MODES = ("group_norm", "layer_norm")
FRONT_ENDS = ("conv", "log_mel")
PRESETS = ("tiny", "base", "large", "xlarge")

# Feature encoder of wav2vec 2.0 §2 / §4.2 and HuBERT §II-E: 7 blocks, strides 5,2,2,2,2,2,2 (320x, 20 ms frames)
# and kernel widths 10,3,3,3,3,2,2 (receptive field 400 samples = 25 ms).
CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)

# Fields checked by ModelConfig: sizes and counts that must be >= 1, and dropout probabilities in [0, 1).
_SIZES = ("conv_dim", "mel_bins", "encoder_layers", "encoder_embed_dim", "encoder_ffn_embed_dim",
          "encoder_attention_heads",
          "conv_pos", "conv_pos_groups", "mask_length", "mask_channel_length", "final_dim", "latent_vars",
          "latent_groups", "num_negatives")
_DROPOUTS = ("dropout", "attention_dropout", "activation_dropout", "dropout_input", "dropout_features",
             "encoder_layerdrop", "final_dropout")


@dataclass(frozen=True)
class ModelConfig:
    """Every architecture and objective hyper-parameter of the wav2vec 2.0 / HuBERT / CTC models."""

    objective: str = "contrastive"  # "contrastive" (wav2vec 2.0) or "hubert"

    # --- feature encoder (wav2vec 2.0 §2) ---
    # "conv": the convolutional waveform encoder below (every preset); "log_mel": mel_bins log-mel filterbanks framed
    # like it (25 ms window, 20 ms hop), no weights (MelHuBERT, arXiv 2211.09944), for CPU-sized models. Measured on
    # the synthetic corpus (tiny HuBERT iteration 1, MFCC units, 2,000 updates of 4 s, seed 1, AMD EPYC, one core):
    # dev masked accuracy 0.177 vs 0.103 with tiny's 64-channel conv encoder (unmasked 0.774 vs 0.315); fine-tuned
    # on train-10min (800 updates) dev CER 46.7 vs 50.1, but from scratch 43.3 vs 50.8 (conv: the demo at 43976d8):
    # it lifts the baseline as much as the pre-trained model, so it is not tiny's default.
    front_end: str = "conv"
    mel_bins: int = 80
    extractor_mode: str = "group_norm"  # "group_norm": GroupNorm in block 1 only (BASE); "layer_norm": every block
    conv_dim: int = 512  # channels of every conv block
    conv_kernels: tuple[int, ...] = CONV_KERNELS
    conv_strides: tuple[int, ...] = CONV_STRIDES
    conv_bias: bool = False
    normalize_waveform: bool = False  # zero mean / unit variance per utterance over its unpadded samples (LARGE)
    feature_grad_mult: float = 0.1  # scales the feature encoder's gradients; 0 freezes it

    # --- transformer (wav2vec 2.0 §2, §4.2) ---
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    layer_norm_first: bool = False  # pre-LN blocks plus a final LayerNorm (LARGE); post-LN otherwise (BASE)
    conv_pos: int = 128  # kernel width of the convolutional relative positional embedding
    conv_pos_groups: int = 16
    dropout: float = 0.1  # transformer residual dropout
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0  # inside the feed-forward block, after the GELU
    dropout_input: float = 0.1  # on the projected features before masking
    dropout_features: float = 0.1  # on the unmasked features that become the contrastive targets
    encoder_layerdrop: float = 0.05  # probability of skipping a whole block in training (LayerDrop)

    # --- masking (wav2vec 2.0 §3.1; fairseq convention: mask_prob = p * mask_length) ---
    mask_prob: float = 0.65
    mask_length: int = 10
    mask_min_masks: int = 2
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 10

    # --- pre-training heads (shared) ---
    final_dim: int = 256  # dimension of the projected outputs compared with targets
    logit_temp: float = 0.1  # kappa: cosine similarities are divided by it
    feature_pen_weight: float = 10.0  # L2 penalty on the feature encoder output (none for log_mel: no weights)

    # --- contrastive objective (wav2vec 2.0 §3) ---
    latent_vars: int = 320  # V entries per codebook
    latent_groups: int = 2  # G codebooks
    latent_dim: int = 0  # total codeword dimension (split over G groups); 0 = final_dim
    latent_temp: tuple[float, float, float] = (2.0, 0.5, 0.999995)  # Gumbel tau: (max, min, decay per update)
    num_negatives: int = 100  # K distractors from the same utterance's masked steps
    diversity_weight: float = 0.1  # alpha of the codebook diversity loss

    # --- HuBERT objective (HuBERT §II-B..D) ---
    label_rates: tuple[float, ...] = (50.0,)  # Hz of each label set (100 for MFCC units, 50 for layer units)
    masked_weight: float = 1.0  # alpha in L = alpha * L_m + (1 - alpha) * L_u

    # --- CTC fine-tuning (wav2vec 2.0 §3.3) ---
    final_dropout: float = 0.0  # dropout before the CTC output layer

    def __post_init__(self) -> None:
        _check(self.objective in OBJECTIVES, f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        _check(self.extractor_mode in EXTRACTOR_MODES, f"extractor_mode must be one of {EXTRACTOR_MODES}")
        _check(self.front_end in FRONT_ENDS, f"front_end must be one of {FRONT_ENDS}, got {self.front_end!r}")
        _check(self.front_end == "conv" or (self.conv_kernels, self.conv_strides) == (CONV_KERNELS, CONV_STRIDES),
               "front_end 'log_mel' frames like the default conv stack (400-sample window, 320 hop): "
               "conv_kernels and conv_strides cannot change")
        _check(len(self.conv_kernels) == len(self.conv_strides) > 0, "conv_kernels and conv_strides differ in length")
        for name in ("conv_kernels", "conv_strides"):
            _check(all(v >= 1 for v in getattr(self, name)), f"{name} must all be >= 1, got {getattr(self, name)}")
        for name in _SIZES:  # before the divisibility checks below, which would divide by zero
            v = getattr(self, name)
            _check(v >= 1, f"{name} must be >= 1, got {v}")
        for name in ("latent_dim", "mask_min_masks"):
            v = getattr(self, name)
            _check(v >= 0, f"{name} must be >= 0, got {v}")
        _check(self.encoder_embed_dim % self.encoder_attention_heads == 0,
               "encoder_embed_dim must be divisible by encoder_attention_heads")
        _check(self.encoder_embed_dim % self.conv_pos_groups == 0,
               "encoder_embed_dim must be divisible by conv_pos_groups")
        for name in _DROPOUTS:  # a probability of 1 would drop everything
            v = getattr(self, name)
            _check(0.0 <= v < 1.0, f"{name} must be in [0, 1), got {v}")
        _check(0.0 <= self.masked_weight <= 1.0, f"masked_weight must be in [0, 1], got {self.masked_weight}")
        for name in ("mask_prob", "mask_channel_prob"):
            v = getattr(self, name)
            _check(0.0 <= v <= 1.0, f"{name} must be in [0, 1] (fairseq convention: p * span length), got {v}")
        for name in ("feature_grad_mult", "feature_pen_weight", "diversity_weight"):
            v = getattr(self, name)
            _check(0.0 <= v < math.inf, f"{name} must be a finite number >= 0, got {v}")
        _check(0.0 < self.logit_temp < math.inf, f"logit_temp must be a finite number > 0, got {self.logit_temp}")
        vq_dim = self.latent_dim or self.final_dim
        _check(vq_dim % self.latent_groups == 0, "latent_dim (or final_dim) must be divisible by latent_groups")
        _check(len(self.latent_temp) == 3, "latent_temp must be (max, min, decay)")
        t_max, t_min, decay = self.latent_temp
        _check(t_max >= t_min > 0.0 and t_max < math.inf and 0.0 < decay <= 1.0,
               f"latent_temp must be (max, min, decay) with max >= min > 0 and decay in (0, 1], got {self.latent_temp}")
        _check(len(self.label_rates) >= 1 and all(0.0 < r < math.inf for r in self.label_rates),
               f"label_rates must be finite and > 0 Hz, got {self.label_rates}")

    @property
    def feature_dim(self) -> int:
        """Channels of the front end's output: conv_dim, or mel_bins for the log-mel front end."""
        return self.conv_dim if self.front_end == "conv" else self.mel_bins

    @property
    def vq_dim(self) -> int:
        """Total dimension of a quantized vector (the G codewords concatenated)."""
        return self.latent_dim or self.final_dim

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise S3LError(f"unknown model config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a checkpoint from a newer s3l)."""
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise S3LError(f"unknown model config field(s): {', '.join(sorted(unknown))}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise S3LError(f"invalid model config: {msg}")


# --------------------------------------------------------------------------------------------------------------
# Presets. Sources: wav2vec 2.0 (Baevski et al., 2020) §4.2 and fairseq examples/wav2vec/config/pretraining/
# {wav2vec2_base_librispeech, wav2vec2_large_librivox}.yaml; HuBERT (Hsu et al., 2021) §II-E, §IV-C, Table I and
# fairseq examples/hubert/config/pretrain/hubert_{base_librispeech,large_librivox,xlarge_librivox}.yaml.
# --------------------------------------------------------------------------------------------------------------

_BASE = ModelConfig()  # BASE: 12 blocks, 768 / 3072, 12 heads, post-LN, GroupNorm extractor (w2v2 §4.2)

_LARGE = _BASE.replace(
    # LARGE: 24 blocks, 1024 / 4096, 16 heads (w2v2 §4.2); the LV-60k recipe adds a LayerNorm extractor with conv
    # bias, pre-LN blocks and per-utterance waveform normalisation (fairseq wav2vec2_large_librivox.yaml).
    extractor_mode="layer_norm",
    conv_bias=True,
    normalize_waveform=True,
    layer_norm_first=True,
    encoder_layers=24,
    encoder_embed_dim=1024,
    encoder_ffn_embed_dim=4096,
    encoder_attention_heads=16,
    final_dim=768,  # w2v2 §4.2: final projection to 768 for LARGE (256 for BASE)
    dropout=0.0,
    attention_dropout=0.0,
    dropout_input=0.0,
    dropout_features=0.0,
    encoder_layerdrop=0.0,
    feature_grad_mult=1.0,
    feature_pen_weight=0.0,  # wav2vec2_large_librivox.yaml: loss_weights [0.1, 0]
    latent_temp=(2.0, 0.1, 0.999995),  # w2v2 §4.2: tau anneals from 2 to 0.1 for LARGE (0.5 for BASE)
)

_TINY = _BASE.replace(
    # CPU demo model (not from the papers): the same architecture and objectives, scaled so a 2-core CPU pre-trains
    # on ~2 h of audio in minutes. The 512-channel feature encoder alone costs ~15 GFLOP per audio second for
    # forward+backward (its cost is quadratic in the channels): 64 channels make it ~50x cheaper, after which the
    # transformer (d=256, 4 blocks, 4 heads) and its positional convolution dominate. Measured forward+backward on
    # 8 x 4 s, one busy CPU core: 64 channels 9-14 audio s/s, 128 channels 6 audio s/s, 512 channels 1-3 audio s/s.
    # LayerDrop is off because with 4 blocks each one matters.
    # The positional convolution spans 16 frames (320 ms), not BASE's 128 (2.56 s, sized for 15.6 s crops): tiny
    # trains on 2 s crops (100 frames), where a 128-tap kernel is mostly zero padding and spreads every frame's
    # context over the whole crop. Measured on piecewise-constant "phone" features (masked prediction must copy
    # the nearest visible frame), 100 updates: HuBERT masked accuracy 0.28 with 16 taps vs 0.02 with 128; on the
    # synthetic corpus (HuBERT, MFCC units, alpha = 0.5, 800 updates) 0.068 vs 0.054.
    conv_dim=64,
    encoder_layers=4,
    encoder_embed_dim=256,
    encoder_ffn_embed_dim=1024,
    encoder_attention_heads=4,
    conv_pos=16,
    final_dim=128,
    encoder_layerdrop=0.0,
)


# tiny wav2vec 2.0: no dropout and no feature penalty, as the LARGE recipe (wav2vec2_large_librivox.yaml). With only
# ~30 s of audio per update, both regularisers hold the contrastive loss on its plateau at ln(K + 1) = 4.615, where
# the context network's masked outputs are all alike and no distractor is preferred: the L2 penalty (weight 10, a
# gradient with the same sign every update, which Adam turns into full-size steps) shrinks the feature encoder's
# mean squared output 50-100-fold within ~150 updates, while the contrastive gradient is still noise (BASE gets
# through this with 32k warm-up updates at lr < 5e-4). Measured on the synthetic corpus (16 x 2 s crops per update,
# lr 1e-3, 600 updates): accuracy leaves the plateau after ~175 updates and reaches 0.26 without either, 0.15 (plateau
# until ~275) with the dropouts only, and 0.030, still on the plateau after 500 updates, with both.
_TINY_CONTRASTIVE = _TINY.replace(
    dropout=0.0, attention_dropout=0.0, dropout_input=0.0, dropout_features=0.0, feature_pen_weight=0.0
)


def preset(name: str, objective: str = "contrastive") -> ModelConfig:
    """The named architecture (``tiny``, ``base``, ``large``, ``xlarge``) for ``objective`` with the papers' values."""
    if objective not in OBJECTIVES:
        raise S3LError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if name not in PRESETS:
        raise S3LError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    if objective == "contrastive":
        if name == "xlarge":
            raise S3LError("preset 'xlarge' exists for --objective hubert only (HuBERT X-LARGE, 964 M parameters)")
        return {"tiny": _TINY_CONTRASTIVE, "base": _BASE, "large": _LARGE}[name]
    # HuBERT uses the wav2vec 2.0 architectures (HuBERT §II-E, Table I) with its own objective settings:
    # mask_prob 0.80 (p = 8 %, M = 10, §IV-C), no quantizer, feature penalty weight 10 for every size
    # (fairseq hubert_*.yaml loss_weights [10]), and no conv bias in the LayerNorm extractor.
    hubert = {"objective": "hubert", "mask_prob": 0.80}
    if name == "tiny":
        # alpha = 0.5 in L = alpha * L_m + (1 - alpha) * L_u (HuBERT §II-B; the papers' alpha = 1 is best at scale,
        # and stays the default of every other preset). The CPU demo sees ~1 h of audio, where masked-only
        # prediction never starts -- measured on the synthetic corpus with MFCC units, masked
        # accuracy stayed at the majority-class rate (0.035) for 2,000 updates with alpha = 1, while the unmasked
        # term trains the feature encoder within a few hundred updates and masked accuracy then rises.
        return _TINY.replace(masked_weight=0.5, **hubert)
    if name == "base":
        return _BASE.replace(**hubert)
    large = _LARGE.replace(conv_bias=False, feature_pen_weight=10.0, **hubert)
    if name == "large":
        return large
    # X-LARGE: 48 blocks, 1280 / 5120, 16 heads, final projection 1024 (HuBERT Table I; hubert_xlarge_librivox.yaml).
    return large.replace(encoder_layers=48, encoder_embed_dim=1280, encoder_ffn_embed_dim=5120, final_dim=1024)


@dataclass(frozen=True)
class FinetunePreset:
    """Masking and LayerDrop for CTC fine-tuning on one amount of labelled data (wav2vec 2.0 Appendix B)."""

    name: str
    mask_prob: float  # fairseq convention: Table 6's start probability p times mask_length
    mask_channel_prob: float  # Table 6's channel start probability times mask_channel_length
    encoder_layerdrop: float
    mask_length: int = 10
    mask_channel_length: int = 64
    overrides: dict[str, Any] = field(default_factory=dict)  # other ModelConfig fields fairseq changes for fine-tuning

    def apply(self, cfg: ModelConfig) -> ModelConfig:
        """``cfg`` with this preset's masking, LayerDrop and fine-tuning dropouts."""
        return cfg.replace(
            mask_prob=self.mask_prob,
            mask_length=self.mask_length,
            mask_channel_prob=self.mask_channel_prob,
            mask_channel_length=self.mask_channel_length,
            encoder_layerdrop=self.encoder_layerdrop,
            **self.overrides,
        )


# fairseq's wav2vec_ctc defaults applied on top of the pre-trained config when fine-tuning (finetuning/base_*.yaml):
# no dropout except 0.1 after the FFN activation, frozen feature encoder.
_FT_OVERRIDES = {
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.1,
    "dropout_input": 0.0,
    "final_dropout": 0.0,
    "feature_grad_mult": 0.0,
    "mask_min_masks": 2,
}


def _ft(name: str, p_time: float, p_channel: float, layerdrop: float) -> FinetunePreset:
    return FinetunePreset(
        name=name,
        mask_prob=round(p_time * 10, 6),
        mask_channel_prob=round(p_channel * 64, 6),
        encoder_layerdrop=layerdrop,
        overrides=dict(_FT_OVERRIDES),
    )


# wav2vec 2.0 Appendix B, Table 6: time-step and channel mask start probabilities per labelled set; LayerDrop as in
# fairseq's examples/wav2vec/config/finetuning/base_*.yaml. The updates, learning rate and freeze period of each set
# (the optimisation budget) are in s3l/finetune.py.
FINETUNE_PRESETS: dict[str, FinetunePreset] = {
    "10min": _ft("10min", 0.075, 0.008, 0.1),
    "1h": _ft("1h", 0.075, 0.004, 0.1),
    "10h": _ft("10h", 0.065, 0.004, 0.05),
    "100h": _ft("100h", 0.05, 0.008, 0.1),
    "960h": _ft("960h", 0.05, 0.0016, 0.1),
}


def finetune_preset(name: str) -> FinetunePreset:
    """Fine-tuning masking/LayerDrop preset ``10min``, ``1h``, ``10h``, ``100h`` or ``960h``."""
    if name not in FINETUNE_PRESETS:
        raise S3LError(f"unknown fine-tuning preset {name!r}; choose one of {', '.join(FINETUNE_PRESETS)}")
    return FINETUNE_PRESETS[name]
