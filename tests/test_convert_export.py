"""s3l models exported to the Hugging Face layout load in transformers and compute the same outputs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    HubertForCTC,
    HubertModel,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
)

from s3l import load_model
from s3l.convert.hf_export import export_hf
from s3l.errors import S3LError
from s3l.models import CTCModel, ModelConfig
from s3l.models import HubertModel as S3LHubert
from s3l.models import Wav2Vec2Model as S3LWav2Vec2

TOL = 1e-4
SMALL = ModelConfig(conv_dim=32, encoder_layers=2, encoder_embed_dim=48, encoder_ffn_embed_dim=96,
                    encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=20, latent_vars=7,
                    latent_dim=24)
PRE_LN = dict(extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True)


def _random(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():  # move LayerNorm gains / zero biases off their initial values so every weight matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _from_pretrained(cls, directory: Path):
    model, info = cls.from_pretrained(directory, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


def _states_match(hf_base, model, wave: torch.Tensor) -> None:
    with torch.no_grad():
        out = hf_base(wave, output_hidden_states=True)
        ours = model.hidden_states(wave)
        enc = model.backbone(wave).x
    ref = list(out.hidden_states)
    if model.config.layer_norm_first and torch.allclose(ref[-1], out.last_hidden_state):
        with torch.no_grad():  # transformers 4.x: the last entry of a pre-LN model has the final LayerNorm applied
            ours[-1] = model.backbone.encoder.layer_norm(ours[-1])
    assert len(ref) == len(ours) == model.config.encoder_layers + 1
    assert max(float((a - b).abs().max()) for a, b in zip(ref, ours)) <= TOL
    assert float((out.last_hidden_state - enc).abs().max()) <= TOL


@pytest.mark.parametrize("kw", [{}, PRE_LN], ids=["post-ln", "pre-ln"])
def test_wav2vec2_exports_as_pretraining_model(tmp_path: Path, kw: dict) -> None:
    model = _random(S3LWav2Vec2(SMALL.replace(**kw)))
    files = export_hf(model, tmp_path)
    assert sorted(f.name for f in files) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    hf = _from_pretrained(Wav2Vec2ForPreTraining, tmp_path)
    wave = torch.randn(2, 4000)
    _states_match(hf.wav2vec2, model, wave)
    with torch.no_grad():
        out = hf(wave)
        bb = model.backbone(wave)
        projected_q = model.project_q(model.quantizer(bb.features).x)
        projected = model.final_proj(bb.x)
    assert float((out.projected_quantized_states - projected_q).abs().max()) <= TOL
    assert float((out.projected_states - projected).abs().max()) <= TOL
    # and back: the same weights
    back = load_model(tmp_path)
    assert back.config == model.config.replace(feature_grad_mult=back.config.feature_grad_mult)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_hubert_exports_backbone(tmp_path: Path) -> None:
    model = _random(S3LHubert(SMALL.replace(objective="hubert", **PRE_LN), [9]))
    export_hf(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["HubertModel"]
    _states_match(_from_pretrained(HubertModel, tmp_path), model, torch.randn(2, 4000))


@pytest.mark.parametrize("objective", ["contrastive", "hubert"])
def test_ctc_exports_with_vocabulary(tmp_path: Path, objective: str) -> None:
    vocab = ["<blank>", "|", "E", "T", "A"]
    model = _random(CTCModel(SMALL.replace(objective=objective), vocab))
    files = export_hf(model, tmp_path)
    assert {"vocab.json", "tokenizer_config.json"} <= {f.name for f in files}
    hf = _from_pretrained(HubertForCTC if objective == "hubert" else Wav2Vec2ForCTC, tmp_path)
    wave = torch.randn(2, 4000)
    _states_match(hf.base_model, model, wave)
    with torch.no_grad():
        logits = hf(wave).logits
        log_probs, _ = model(wave)
    assert float((F.log_softmax(logits, -1) - log_probs).abs().max()) <= TOL
    tok = Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    assert tok.pad_token_id == 0 and hf.config.pad_token_id == 0
    assert tok.decode([2, 2, 0, 3, 1, 4]) == "ET A"  # CTC collapse, blank dropped, "|" -> space
    back = load_model(tmp_path)
    assert back.vocab == vocab
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_fairseq_style_vocabulary_gets_transformers_layout(tmp_path: Path) -> None:
    vocab = ["<blank>", "<pad>", "</s>", "<unk>", "|", "E"]  # as imported from a fairseq CTC checkpoint
    export_hf(_random(CTCModel(SMALL, vocab)), tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3,
                                                                 "|": 4, "E": 5}


def test_identity_projection_and_normalisation(tmp_path: Path) -> None:
    model = _random(S3LWav2Vec2(SMALL.replace(encoder_embed_dim=32, normalize_waveform=True, **PRE_LN)))
    assert model.backbone.post_extract_proj is None
    export_hf(model, tmp_path)
    fe = Wav2Vec2FeatureExtractor.from_pretrained(tmp_path)
    assert fe.do_normalize and fe.return_attention_mask
    hf = _from_pretrained(Wav2Vec2ForPreTraining, tmp_path)
    wave = 0.3 * torch.randn(4000) + 0.1
    normalised = torch.from_numpy(fe(wave.numpy(), sampling_rate=16000).input_values[0])[None]
    with torch.no_grad():
        ref = hf.wav2vec2(normalised, output_hidden_states=True).hidden_states
        ours = model.hidden_states(wave[None])
    # transformers normalises with variance epsilon 1e-7, s3l with 1e-5 (a difference of ~2e-5 here)
    assert max(float((a - b).abs().max()) for a, b in zip(ref[:-1], ours[:-1])) <= TOL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_model(tmp_path)  # identity projection dropped again, nothing freshly initialised
    assert back.backbone.post_extract_proj is None and back.config.normalize_waveform


def test_log_mel_models_are_not_exported(tmp_path: Path) -> None:
    model = S3LWav2Vec2(SMALL.replace(front_end="log_mel", mel_bins=24))
    with pytest.raises(S3LError, match="log_mel front end; Hugging Face"):
        export_hf(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_existing_files_are_not_overwritten(tmp_path: Path) -> None:
    model = S3LWav2Vec2(SMALL)
    export_hf(model, tmp_path)
    with pytest.raises(S3LError, match="config.json .*already exists; pass --force"):
        export_hf(model, tmp_path)
    export_hf(model, tmp_path, force=True)
