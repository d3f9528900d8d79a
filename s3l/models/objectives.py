"""The kinds of model s3l builds, in one table, and the one factory that builds them.

A kind is what a checkpoint's ``kind`` metadata names: a pre-training objective's model (``wav2vec2`` for the
contrastive objective, ``hubert``) or the CTC fine-tuning model (``ctc``). Each entry says which class implements
it, which pre-training objective (``ModelConfig.objective``, ``--objective``) trains it, and what else its
constructor needs beside the config (HuBERT: the units per label set; CTC: the vocabulary), which is also what its
checkpoint stores beside the weights. Adding an objective adds a model module and a row here; loading, saving,
conversion and ``s3l pretrain`` find it through :func:`kind_of_objective` and :func:`build_model`.

Model classes are imported when first built, so importing this module does not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from s3l.errors import S3LError

if TYPE_CHECKING:
    from torch import nn

    from s3l.models.config import ModelConfig


@dataclass(frozen=True)
class Kind:
    name: str  # checkpoint kind
    module: str  # s3l.models.<module>
    cls: str  # the model class in it
    objective: str | None  # the pre-training objective whose model this is (None: a fine-tuning head)
    extra: str | None  # the constructor's second argument and checkpoint metadata key: num_classes | vocab
    labels: bool  # pre-training reads unit label files (--labels)

    def model_class(self) -> type:
        return getattr(importlib.import_module(f"s3l.models.{self.module}"), self.cls)


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("wav2vec2", "wav2vec2", "Wav2Vec2Model", objective="contrastive", extra=None, labels=False),
    Kind("hubert", "hubert", "HubertModel", objective="hubert", extra="num_classes", labels=True),
    Kind("ctc", "ctc", "CTCModel", objective=None, extra="vocab", labels=False),
)}
OBJECTIVES: tuple[str, ...] = tuple(k.objective for k in KINDS.values() if k.objective)


def kind_of_objective(objective: str) -> Kind:
    """The pre-training model kind of ``objective`` (``contrastive`` -> ``wav2vec2``)."""
    for k in KINDS.values():
        if k.objective == objective:
            return k
    raise S3LError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")


def build_model(kind: str, cfg: ModelConfig, extra: Any = None) -> nn.Module:
    """A freshly initialised model of ``kind`` for ``cfg``; ``extra`` is what the kind needs beside the config
    (``num_classes`` for hubert, ``vocab`` for ctc; see :data:`KINDS`)."""
    k = KINDS.get(kind)
    if k is None:
        raise S3LError(f"unknown model kind {kind!r} (expected one of {', '.join(KINDS)})")
    cls = k.model_class()
    return cls(cfg) if k.extra is None else cls(cfg, list(extra or []))


def extra_of(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint of ``model`` stores beside its config and weights (``{"num_classes": [...]}`` etc.)."""
    k = KINDS[model.kind]  # type: ignore[index]
    return {} if k.extra is None else {k.extra: list(getattr(model, k.extra))}
