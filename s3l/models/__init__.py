"""wav2vec 2.0 and HuBERT models, their pre-training objectives, and the CTC fine-tuning model.

One idea per module: ``config`` (ModelConfig + presets), ``feature_encoder``, ``masking``, ``quantizer``,
``transformer``, ``backbone`` (shared by every model), ``wav2vec2`` (contrastive objective), ``hubert`` (HuBERT
objective), ``ctc`` (CTC head), ``objectives`` (the table of model kinds and the one factory), ``io`` (s3l
checkpoints).

Names are resolved lazily so that ``import s3l.models`` and the config classes do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3l.models.backbone import Backbone, PretrainOutput
    from s3l.models.config import FinetunePreset, ModelConfig, finetune_preset, preset
    from s3l.models.ctc import CTCModel
    from s3l.models.feature_encoder import encoder_frames
    from s3l.models.hubert import HubertModel
    from s3l.models.io import build_pretrain_model, load_model, save_model
    from s3l.models.masking import compute_mask_indices
    from s3l.models.objectives import build_model
    from s3l.models.wav2vec2 import Wav2Vec2Model

_EXPORTS = {
    "ModelConfig": "config",
    "FinetunePreset": "config",
    "preset": "config",
    "finetune_preset": "config",
    "compute_mask_indices": "masking",
    "encoder_frames": "feature_encoder",
    "Backbone": "backbone",
    "PretrainOutput": "backbone",
    "Wav2Vec2Model": "wav2vec2",
    "HubertModel": "hubert",
    "CTCModel": "ctc",
    "build_model": "objectives",
    "build_pretrain_model": "io",
    "save_model": "io",
    "load_model": "io",
}

__all__ = [
    "Backbone",
    "CTCModel",
    "FinetunePreset",
    "HubertModel",
    "ModelConfig",
    "PretrainOutput",
    "Wav2Vec2Model",
    "build_model",
    "build_pretrain_model",
    "compute_mask_indices",
    "encoder_frames",
    "finetune_preset",
    "load_model",
    "preset",
    "save_model",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"s3l.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 's3l.models' has no attribute {name!r}")
