"""The table of model kinds (s3l/models/objectives.py): it agrees with the model classes, and its one factory
builds what checkpoints describe."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_models_io import VOCAB, _micro

from s3l.errors import S3LError
from s3l.models import ModelConfig
from s3l.models.objectives import KINDS, OBJECTIVES, build_model, extra_of, kind_of_objective


def test_the_table_agrees_with_the_model_classes() -> None:
    assert OBJECTIVES == ("contrastive", "hubert")
    assert (kind_of_objective("contrastive").name, kind_of_objective("hubert").name) == ("wav2vec2", "hubert")
    for name, k in KINDS.items():
        assert k.model_class().kind == name  # what save_model writes as the checkpoint kind
    with pytest.raises(S3LError, match="unknown objective 'data2vec'; choose one of contrastive, hubert"):
        kind_of_objective("data2vec")
    with pytest.raises(S3LError, match="unknown model kind 'kmeans'"):
        build_model("kmeans", _micro())


def test_build_model_and_the_metadata_each_kind_keeps() -> None:
    w2v = build_model("wav2vec2", _micro())
    hub = build_model("hubert", _micro(objective="hubert", label_rates=(50.0,)), [7])
    ctc = build_model("ctc", _micro(), VOCAB)
    assert extra_of(w2v) == {} and extra_of(hub) == {"num_classes": [7]} and extra_of(ctc) == {"vocab": VOCAB}
    assert isinstance(w2v.config, ModelConfig) and hub.num_classes == [7] and ctc.vocab == VOCAB


def test_importing_the_table_loads_no_torch() -> None:
    probe = "import sys, s3l.models.objectives, s3l.models.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
