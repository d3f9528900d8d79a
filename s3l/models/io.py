"""Build models, and save / load them as s3l checkpoints (safetensors + model config in the metadata).

Checkpoint metadata (see :mod:`s3l.checkpoint`): ``kind`` (``wav2vec2`` | ``hubert`` | ``ctc``), ``config`` (the
:class:`ModelConfig` as a JSON object), ``num_classes`` (HuBERT: units per label set; label rates are in the config)
and ``vocab`` (CTC), plus whatever the caller adds. :func:`load_model` needs no other file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3l.checkpoint import load_checkpoint, save_checkpoint
from s3l.errors import S3LError
from s3l.models.config import ModelConfig
from s3l.models.objectives import KINDS, build_model, extra_of, kind_of_objective

MODEL_KINDS = tuple(KINDS)
_RESERVED = {"kind", "config", "num_classes", "vocab", "format", "format_version"}


def build_pretrain_model(cfg: ModelConfig, num_classes: list[int] | None = None) -> nn.Module:
    """The pre-training model for ``cfg.objective``; HuBERT needs ``num_classes`` (K per label set)."""
    kind = kind_of_objective(cfg.objective)
    if kind.extra == "num_classes" and not num_classes:
        raise S3LError("HuBERT pre-training needs the number of units of each label set (dict.km.txt)")
    return build_model(kind.name, cfg, num_classes)


def save_model(path: str | Path, model: nn.Module, **extra_meta: Any) -> None:
    """Write ``model``'s weights and everything needed to rebuild it to an s3l checkpoint (atomically)."""
    kind = getattr(model, "kind", None)
    if kind not in MODEL_KINDS:
        raise TypeError(f"cannot save a {type(model).__name__}: not an s3l model")
    clash = _RESERVED & set(extra_meta)
    if clash:
        raise ValueError(f"metadata keys reserved by save_model: {sorted(clash)}")
    meta: dict[str, Any] = {"config": model.config.to_dict(), **extra_of(model)}
    save_checkpoint(path, model.state_dict(), kind, **meta, **extra_meta)


def model_from_meta(meta: dict[str, Any], where: str = "checkpoint") -> nn.Module:
    """An untrained model of the kind and shape ``meta`` describes."""
    kind = meta.get("kind")
    if kind not in MODEL_KINDS:
        raise S3LError(f"{where}: an s3l {kind!r} checkpoint, not a model (expected one of {', '.join(MODEL_KINDS)})")
    try:
        cfg = ModelConfig.from_dict(meta["config"])
        extra = KINDS[kind].extra
        return build_model(kind, cfg, meta[extra] if extra else None)
    except KeyError as e:
        raise S3LError(f"{where}: checkpoint metadata lacks {e}") from None
    except S3LError as e:
        raise S3LError(f"{where}: {e}") from None


def load_model(path: str | Path) -> nn.Module:
    """Load an s3l checkpoint, a fairseq ``.pt`` or a Hugging Face directory (:mod:`s3l.convert`) in eval mode."""
    path = Path(path)
    if path.is_dir() or path.suffix in (".pt", ".pth", ".bin"):
        return _load_foreign(path)
    tensors, meta = load_checkpoint(path)
    with torch.device("meta"):
        model = model_from_meta(meta, str(path))
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as e:
        raise S3LError(f"{path}: weights do not match the {meta['kind']} model in its metadata ({_first(e)})") from None
    _check_materialised(model, path)
    return model.eval()


def _load_foreign(path: Path) -> nn.Module:
    try:
        from s3l import convert  # fairseq / Hugging Face import lives in s3l/convert/
    except ImportError:
        raise S3LError(f"{path}: not an s3l checkpoint (fairseq / Hugging Face import is not available)") from None
    return convert.load_foreign(path).eval()


def _check_materialised(model: nn.Module, path: Path) -> None:
    """The model was built on the meta device: every tensor must have come from the checkpoint."""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:
            raise S3LError(f"{path}: tensor {name} is missing from the checkpoint")


def _first(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
