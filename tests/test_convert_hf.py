"""Hugging Face directories load into s3l with the same hidden states and CTC outputs as transformers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    HubertConfig,
    HubertForCTC,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2ForPreTraining,
    Wav2Vec2Model,
)

from s3l import load_model
from s3l.convert import detect_format
from s3l.convert.hf import load_hf
from s3l.errors import S3LError

TOL = 1e-4
SMALL = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, conv_dim=(32,) * 7,
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
PRE_LN = dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "E", "T"]


def _hf(model_cls, config_cls, **kw):
    torch.manual_seed(0)
    model = model_cls(config_cls(**SMALL, **kw)).eval()
    with torch.no_grad():  # move LayerNorm gains / zero biases off their initial values so every weight matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _save(model, directory: Path, vocab: list[str] | None = None) -> Path:
    model.save_pretrained(directory)
    if vocab is not None:
        (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    return directory


def _load(directory: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pre-training heads a bare HF model lacks are freshly initialised
        return load_model(directory)


def _check_states(hf_model, model, wave: torch.Tensor) -> list[float]:
    """Every hidden state equal; HF's encoder output equals s3l's (final LayerNorm included for pre-LN)."""
    with torch.no_grad():
        out = hf_model.base_model(wave, output_hidden_states=True)  # Wav2Vec2Model / HubertModel inside *ForCTC
        ours = model.hidden_states(wave)
        enc = model.backbone(wave).x
    ref = list(out.hidden_states)
    n = model.config.encoder_layers
    assert len(ref) == len(ours) == n + 1
    if model.config.layer_norm_first and torch.allclose(ref[-1], out.last_hidden_state):
        # transformers 4.x convention: the last entry of a pre-LN model has the final LayerNorm applied
        with torch.no_grad():
            ours[-1] = model.backbone.encoder.layer_norm(ours[-1])
    diffs = [float((a - b).abs().max()) for a, b in zip(ref, ours)]
    assert max(diffs) <= TOL
    assert float((out.last_hidden_state - enc).abs().max()) <= TOL
    return diffs


@pytest.mark.parametrize(
    ("model_cls", "config_cls", "kw"),
    [(Wav2Vec2Model, Wav2Vec2Config, {}), (Wav2Vec2Model, Wav2Vec2Config, PRE_LN),
     (HubertModel, HubertConfig, {}), (HubertModel, HubertConfig, PRE_LN)],
    ids=["wav2vec2-group-post-ln", "wav2vec2-layer-pre-ln", "hubert-group-post-ln", "hubert-layer-pre-ln"],
)
def test_base_models_hidden_states_match(tmp_path: Path, model_cls, config_cls, kw) -> None:
    hf_model = _hf(model_cls, config_cls, **kw)
    model = _load(_save(hf_model, tmp_path))
    expected_kind = "hubert" if model_cls is HubertModel else "wav2vec2"
    assert model.kind == expected_kind and not model.training
    cfg = model.config
    assert cfg.layer_norm_first == bool(kw) and cfg.extractor_mode == ("layer_norm" if kw else "group_norm")
    assert (cfg.conv_dim, cfg.encoder_embed_dim, cfg.encoder_layers, cfg.conv_pos) == (32, 48, 2, 16)
    assert not cfg.normalize_waveform
    _check_states(hf_model, model, torch.randn(2, 4000))


def test_padded_batch_with_attention_mask(tmp_path: Path) -> None:
    hf_model = _hf(Wav2Vec2Model, Wav2Vec2Config, **PRE_LN)
    model = _load(_save(hf_model, tmp_path))
    wave = torch.randn(2, 4000)
    wave[1, 2500:] = 0.0
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 2500:] = 0
    with torch.no_grad():
        ref = hf_model(wave, attention_mask=mask, output_hidden_states=True).hidden_states
        ours = model.hidden_states(wave, torch.tensor([4000, 2500]))
    for a, b in zip(ref[:-1], ours[:-1]):
        assert float((a[0] - b[0]).abs().max()) <= TOL
        assert float((a[1, :7] - b[1, :7]).abs().max()) <= TOL


@pytest.mark.parametrize(("model_cls", "config_cls", "kw"),
                         [(Wav2Vec2ForCTC, Wav2Vec2Config, {}), (HubertForCTC, HubertConfig, PRE_LN)],
                         ids=["wav2vec2-ctc", "hubert-ctc-pre-ln"])
def test_ctc_models_match(tmp_path: Path, model_cls, config_cls, kw) -> None:
    hf_model = _hf(model_cls, config_cls, vocab_size=len(VOCAB), **kw)
    model = _load(_save(hf_model, tmp_path, VOCAB))
    assert model.kind == "ctc"
    assert model.config.objective == ("hubert" if model_cls is HubertForCTC else "contrastive")
    assert model.vocab == ["<blank>"] + VOCAB[1:]
    wave = torch.randn(2, 4000)
    _check_states(hf_model, model, wave)
    with torch.no_grad():
        logits = hf_model(wave).logits
        log_probs, _ = model(wave)
    assert float((log_probs - F.log_softmax(logits, -1)).abs().max()) <= TOL


def test_ctc_blank_is_moved_to_index_zero(tmp_path: Path) -> None:
    vocab = ["|", "E", "T", "<pad>"]  # the blank (pad_token_id) last
    hf_model = _hf(Wav2Vec2ForCTC, Wav2Vec2Config, vocab_size=4, pad_token_id=3)
    model = _load(_save(hf_model, tmp_path, vocab))
    assert model.vocab == ["<blank>", "|", "E", "T"]
    wave = torch.randn(1, 4000)
    with torch.no_grad():
        ref = F.log_softmax(hf_model(wave).logits, -1)[..., [3, 0, 1, 2]]
        log_probs, _ = model(wave)
    assert float((log_probs - ref).abs().max()) <= TOL


def test_pretraining_heads_match(tmp_path: Path) -> None:
    hf_model = _hf(Wav2Vec2ForPreTraining, Wav2Vec2Config, codevector_dim=24, proj_codevector_dim=20,
                   num_codevectors_per_group=7)
    model = _load(_save(hf_model, tmp_path))
    cfg = model.config
    assert (cfg.latent_vars, cfg.latent_groups, cfg.vq_dim, cfg.final_dim) == (7, 2, 24, 20)
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        out = hf_model(wave)  # eval: no masking, arg-max codewords
        bb = model.backbone(wave)
        q = model.quantizer(bb.features)
        projected_q = model.project_q(q.x)
        projected = model.final_proj(bb.x)
    assert float((out.projected_quantized_states - projected_q).abs().max()) <= TOL
    assert float((out.projected_states - projected).abs().max()) <= TOL


def test_pytorch_model_bin_is_read_safely(tmp_path: Path) -> None:
    hf_model = _hf(Wav2Vec2Model, Wav2Vec2Config)
    hf_model.config.save_pretrained(tmp_path)
    torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
    assert detect_format(tmp_path / "pytorch_model.bin") == "hf"
    model = _load(tmp_path / "pytorch_model.bin")
    _check_states(hf_model, model, torch.randn(1, 4000))


def test_do_normalize_moves_into_the_model(tmp_path: Path) -> None:
    hf_model = _hf(Wav2Vec2Model, Wav2Vec2Config, **PRE_LN)
    _save(hf_model, tmp_path)
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    fe.save_pretrained(tmp_path)
    model = _load(tmp_path)
    assert model.config.normalize_waveform
    wave = 0.3 * torch.randn(4000) + 0.1
    normalised = torch.from_numpy(fe(wave.numpy(), sampling_rate=16000).input_values[0])[None]
    with torch.no_grad():
        ref = hf_model(normalised, output_hidden_states=True).hidden_states
        ours = model.hidden_states(wave[None])
    # HF normalises with variance epsilon 1e-7, s3l with 1e-5: a difference of ~2e-5 here
    assert max(float((a - b).abs().max()) for a, b in zip(ref[:-1], ours[:-1])) <= TOL


def test_errors_name_the_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(S3LError, match=f"{empty}: unknown directory layout"):
        load_model(empty)
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"")
    with pytest.raises(S3LError, match=f"{no_config}: Hugging Face weights without config.json"):
        load_model(no_config)
    with pytest.raises(S3LError, match="no config.json"):
        load_hf(no_config)
    other = tmp_path / "wavlm"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "wavlm"}))
    with pytest.raises(S3LError, match=f"{other}: unsupported model_type 'wavlm'"):
        load_model(other)
    bad_json = tmp_path / "bad"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{")
    with pytest.raises(S3LError, match="config.json: not valid JSON"):
        load_model(bad_json)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(S3LError, match="without model.safetensors or pytorch_model.bin"):
        load_model(no_weights)
    with pytest.raises(S3LError, match="model not found"):
        load_model(tmp_path / "missing.pt")


def test_ctc_without_vocab_and_unsupported_configs(tmp_path: Path) -> None:
    ctc = _save(_hf(Wav2Vec2ForCTC, Wav2Vec2Config, vocab_size=7), tmp_path / "ctc")
    with pytest.raises(S3LError, match="vocab.json is missing"):
        load_model(ctc)
    (ctc / "vocab.json").write_text(json.dumps({"a": 0, "b": 1}))
    with pytest.raises(S3LError, match="no token for output 2 of 7"):
        load_model(ctc)
    relu = _save(_hf(Wav2Vec2Model, Wav2Vec2Config, hidden_act="relu"), tmp_path / "relu")
    with pytest.raises(S3LError, match="hidden_act='relu' is not supported"):
        load_model(relu)
    mixed = _hf(Wav2Vec2Model, Wav2Vec2Config)
    mixed.config.conv_dim = [32] * 6 + [16]
    (tmp_path / "mixed").mkdir()
    mixed.config.save_pretrained(tmp_path / "mixed")
    (tmp_path / "mixed" / "model.safetensors").write_bytes((ctc / "model.safetensors").read_bytes())
    with pytest.raises(S3LError, match="different widths"):
        load_model(tmp_path / "mixed")
