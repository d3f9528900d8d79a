"""fairseq checkpoints load without fairseq, without running pickled code, and match torchaudio's fairseq import.

There is no fairseq here, so the tests build fairseq-shaped modules (the same module tree, hence the same state-dict
keys: ``feature_extractor.conv_layers.0.0.weight``, ``encoder.pos_conv.0.weight_g``, ``encoder.layers.0.self_attn.
k_proj.weight``, ...) with random weights. torchaudio's ``import_fairseq_model`` reads such a module (by class name
and structure) into a torchaudio model: that is the independent reference the s3l import is compared with.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchaudio.models.wav2vec2.utils import import_fairseq_model

from s3l import load_model
from s3l.convert.fairseq import load_fairseq
from s3l.errors import S3LError

TOL = 1e-4
CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"
ARCH = dict(encoder_layers=2, encoder_embed_dim=48, encoder_ffn_embed_dim=96, encoder_attention_heads=4,
            conv_pos=16, conv_pos_groups=4, conv_feature_layers=CONV, final_dim=20, latent_vars=7, latent_groups=2,
            latent_dim=24, dropout_input=0.1, encoder_layerdrop=0.05)


# --- fairseq-shaped modules (structure and parameter names only; torchaudio's importer inspects them) -------------
class Fp32GroupNorm(nn.GroupNorm):
    pass


class Fp32LayerNorm(nn.LayerNorm):
    pass


class TransposeLast(nn.Module):
    pass


class SamePad(nn.Module):
    pass


class ConvFeatureExtractionModel(nn.Module):
    def __init__(self, mode: str, bias: bool) -> None:
        super().__init__()
        blocks, cin = [], 1
        for i, (k, s) in enumerate([(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2):
            conv = nn.Conv1d(cin, 32, k, stride=s, bias=bias)
            if mode == "layer_norm":
                norm = nn.Sequential(TransposeLast(), Fp32LayerNorm(32), TransposeLast())
                blocks.append(nn.Sequential(conv, nn.Dropout(0.0), norm, nn.GELU()))
            elif i == 0:
                blocks.append(nn.Sequential(conv, nn.Dropout(0.0), Fp32GroupNorm(32, 32), nn.GELU()))
            else:
                blocks.append(nn.Sequential(conv, nn.Dropout(0.0), nn.GELU()))
            cin = 32
        self.conv_layers = nn.ModuleList(blocks)


class MultiheadAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.dropout_module = nn.Dropout(0.0)
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))


class TransformerSentenceEncoderLayer(nn.Module):
    def __init__(self, dim: int, ffn: int, heads: int) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, heads)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(0.0), nn.Dropout(0.0), nn.Dropout(0.0)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)


class TransformerEncoder(nn.Module):
    def __init__(self, layer_norm_first: bool) -> None:
        super().__init__()
        conv = nn.Conv1d(48, 48, 16, padding=8, groups=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the old weight_norm gives the weight_g / weight_v keys of fairseq files
            conv = torch.nn.utils.weight_norm(conv, name="weight", dim=2)
        self.pos_conv = nn.Sequential(conv, SamePad(), nn.GELU())
        self.layers = nn.ModuleList(TransformerSentenceEncoderLayer(48, 96, 4) for _ in range(2))
        self.layer_norm_first = layer_norm_first
        self.layer_norm = nn.LayerNorm(48)
        self.layerdrop = 0.0


class Wav2Vec2Model(nn.Module):
    def __init__(self, mode: str = "group_norm", layer_norm_first: bool = False, bias: bool = False,
                 heads: bool = True) -> None:
        super().__init__()
        self.feature_extractor = ConvFeatureExtractionModel(mode, bias)
        self.post_extract_proj = nn.Linear(32, 48)
        self.dropout_input = nn.Dropout(0.0)
        self.layer_norm = nn.LayerNorm(32)
        self.mask_emb = nn.Parameter(torch.rand(48))
        self.encoder = TransformerEncoder(layer_norm_first)
        if heads:
            self.quantizer = nn.Module()
            self.quantizer.vars = nn.Parameter(torch.rand(1, 14, 12))
            self.quantizer.weight_proj = nn.Linear(32, 14)
            self.project_q = nn.Linear(24, 20)
            self.final_proj = nn.Linear(48, 20)


class HubertModel(Wav2Vec2Model):
    def __init__(self, mode: str = "group_norm", layer_norm_first: bool = False) -> None:
        super().__init__(mode, layer_norm_first, heads=False)
        self.final_proj = nn.Linear(48, 20)
        self.label_embs_concat = nn.Parameter(torch.rand(504, 20))


class Wav2VecEncoder(nn.Module):  # fairseq's CTC encoder (torchaudio's importer takes this one)
    def __init__(self, w2v_model: nn.Module, outputs: int) -> None:
        super().__init__()
        self.w2v_model = w2v_model
        self.proj = nn.Linear(48, outputs)


class HubertEncoder(Wav2VecEncoder):
    pass


class Wav2VecCtc(nn.Module):
    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.w2v_encoder = encoder


def _random(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module


def _cfg(name: str, mode: str, layer_norm_first: bool, bias: bool = False, **extra) -> dict:
    model = dict(ARCH, _name=name, extractor_mode="default" if mode == "group_norm" else "layer_norm",
                 layer_norm_first=layer_norm_first, conv_bias=bias, **extra)
    return {"model": model, "task": {"_name": "audio_pretraining", "normalize": False},
            "criterion": {"_name": "wav2vec", "loss_weights": [0.1, 10.0]}}


def _save(path: Path, model: nn.Module, **ckpt) -> Path:
    torch.save({"model": model.state_dict(), **ckpt, "extra_state": {"epoch": 3}}, path)
    return path


def _compare(reference, model, wave: torch.Tensor) -> list[float]:
    with torch.no_grad():
        ref, _ = reference.extract_features(wave)
        ours = model.hidden_states(wave)
    assert len(ours) == len(ref) + 1
    diffs = [float((a - b).abs().max()) for a, b in zip(ref, ours[1:])]
    assert max(diffs) <= TOL
    return diffs


@pytest.mark.parametrize(("mode", "layer_norm_first", "bias"),
                         [("group_norm", False, False), ("layer_norm", True, True)], ids=["base", "large"])
def test_wav2vec2_checkpoint_matches_torchaudio_import(tmp_path: Path, mode: str, layer_norm_first: bool,
                                                       bias: bool) -> None:
    fs = _random(Wav2Vec2Model(mode, layer_norm_first, bias)).eval()
    path = _save(tmp_path / "w2v.pt", fs, cfg=_cfg("wav2vec2", mode, layer_norm_first, bias, quantize_targets=True))
    model = load_model(path)
    assert model.kind == "wav2vec2" and not model.training
    cfg = model.config
    assert (cfg.extractor_mode, cfg.layer_norm_first, cfg.conv_bias, cfg.conv_dim) == (mode, layer_norm_first, bias, 32)
    assert (cfg.final_dim, cfg.latent_vars, cfg.vq_dim) == (20, 7, 24)
    assert (cfg.dropout_input, cfg.encoder_layerdrop) == (0.1, 0.05)
    assert (cfg.diversity_weight, cfg.feature_pen_weight) == (0.1, 10.0)
    for ours, theirs in (("quantizer.vars", "quantizer.vars"), ("project_q.weight", "project_q.weight"),
                         ("final_proj.bias", "final_proj.bias"), ("backbone.mask_emb", "mask_emb")):
        assert torch.equal(model.state_dict()[ours], fs.state_dict()[theirs])
    _compare(import_fairseq_model(fs).eval(), model, torch.randn(2, 4000))


def test_hubert_checkpoint_with_interpolated_label_rate(tmp_path: Path) -> None:
    fs = _random(HubertModel("layer_norm", True)).eval()
    cfg = _cfg("hubert", "layer_norm", True, label_rate="${task.label_rate}")
    cfg["task"].update(_name="hubert_pretraining", label_rate=100.0, labels=["km"], normalize=True)
    cfg["criterion"] = {"_name": "hubert", "loss_weights": [10.0], "pred_masked_weight": 1.0,
                        "pred_nomask_weight": 0.0}
    model = load_model(_save(tmp_path / "hubert.pt", fs, cfg=cfg))
    assert model.kind == "hubert" and model.num_classes == [504]
    assert model.config.label_rates == (100.0,) and model.config.normalize_waveform
    assert model.config.masked_weight == 1.0 and model.config.feature_pen_weight == 10.0
    assert torch.equal(model.label_embs_concat, fs.label_embs_concat)
    wave = torch.randn(2, 4000)
    normalised = F.layer_norm(wave, wave.shape[1:])  # what fairseq's dataset does with task.normalize
    with torch.no_grad():
        ref, _ = import_fairseq_model(fs).eval().extract_features(normalised)
        ours = model.hidden_states(wave)
    assert max(float((a - b).abs().max()) for a, b in zip(ref, ours[1:])) <= TOL


def _write_dict(path: Path, symbols: list[str]) -> None:
    path.write_text("".join(f"{s} {100 - i}\n" for i, s in enumerate(symbols)))


@pytest.mark.parametrize("hubert", [False, True], ids=["wav2vec2-ctc", "hubert-ctc"])
def test_ctc_checkpoint_matches_torchaudio_import(tmp_path: Path, hubert: bool) -> None:
    inner = HubertModel() if hubert else Wav2Vec2Model(heads=False)
    enc = (HubertEncoder if hubert else Wav2VecEncoder)(inner, 4 + 3)
    fs = _random(Wav2VecCtc(enc)).eval()
    pre = _cfg("hubert" if hubert else "wav2vec2", "group_norm", False,
               **({"label_rate": 50} if hubert else {"quantize_targets": True}))
    ctc_cfg = {"model": {"_name": "hubert_ctc" if hubert else "wav2vec_ctc", "w2v_args": pre, "apply_mask": True,
                         "mask_prob": 0.5, "mask_channel_prob": 0.25, "mask_channel_length": 64, "layerdrop": 0.1,
                         "final_dropout": 0.0, "feature_grad_mult": 0.0, "activation_dropout": 0.1},
               "task": {"_name": "audio_finetuning", "normalize": False, "labels": "ltr", "data": "/nonexistent"}}
    path = _save(tmp_path / "ctc.pt", fs, cfg=ctc_cfg)
    with pytest.raises(S3LError, match="put dict.ltr.txt"):
        load_model(path)
    _write_dict(tmp_path / "dict.ltr.txt", ["|", "E", "T", "A"])
    with pytest.raises(S3LError, match="dict.ltr.txt: 4 symbols plus fairseq's 4 special symbols make 8"):
        load_model(path)
    _write_dict(tmp_path / "dict.ltr.txt", ["|", "E", "T"])
    model = load_model(path)
    assert model.kind == "ctc" and model.vocab == ["<blank>", "<pad>", "</s>", "<unk>", "|", "E", "T"]
    cfg = model.config
    assert cfg.objective == ("hubert" if hubert else "contrastive")
    assert (cfg.mask_prob, cfg.mask_channel_prob, cfg.mask_channel_length) == (0.5, 0.25, 64)
    assert cfg.encoder_layerdrop == 0.1
    assert (cfg.feature_grad_mult, cfg.activation_dropout) == (0.0, 0.1)
    reference = import_fairseq_model(fs.w2v_encoder).eval()
    wave = torch.randn(2, 4000)
    _compare(reference, model, wave)
    with torch.no_grad():
        logits, _ = reference(wave)
        log_probs, _ = model(wave)
    assert float((log_probs - F.log_softmax(logits, -1)).abs().max()) <= TOL


# --- configuration objects: DictConfig and argparse.Namespace, read without omegaconf / fairseq ------------------
class _Node:
    def __init__(self, value) -> None:
        self._metadata = None
        self._val = value


class _DictConfig:
    """Pickles like omegaconf's DictConfig: its nodes under ``_content``, metadata naming other classes."""

    def __init__(self, content: dict) -> None:
        self._metadata = {"object_type": _DictConfig, "key_type": str}
        self._parent = None
        self._content = {k: _DictConfig(v) if isinstance(v, dict) else _Node(v) for k, v in content.items()}


@pytest.fixture
def fake_omegaconf():
    """Modules named like omegaconf's, present only while the checkpoint is written."""
    names = {n: types.ModuleType(n) for n in ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes")}
    names["omegaconf"].__path__ = []
    _DictConfig.__module__, _DictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    _Node.__module__, _Node.__qualname__ = "omegaconf.nodes", "AnyNode"
    names["omegaconf.dictconfig"].DictConfig = _DictConfig
    names["omegaconf.nodes"].AnyNode = _Node
    saved = {k: sys.modules.get(k) for k in names}
    sys.modules.update(names)
    yield
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


def test_dictconfig_checkpoint_is_read_without_omegaconf(tmp_path: Path, fake_omegaconf) -> None:
    fs = _random(Wav2Vec2Model()).eval()
    path = _save(tmp_path / "dc.pt", fs, cfg=_DictConfig(_cfg("wav2vec2", "group_norm", False, quantize_targets=True)))
    for k in ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes"):
        sys.modules.pop(k)
    with pytest.raises(Exception, match="omegaconf"):  # torch's own safe loader refuses the file
        torch.load(path, weights_only=True)
    model = load_model(path)
    assert "omegaconf" not in sys.modules  # nothing was imported to read it
    assert model.config.final_dim == 20 and model.config.encoder_layers == 2
    _compare(import_fairseq_model(fs).eval(), model, torch.randn(1, 4000))


def test_argparse_namespace_checkpoint(tmp_path: Path) -> None:
    fs = _random(Wav2Vec2Model("layer_norm", True, True)).eval()
    args = argparse.Namespace(arch="wav2vec2", extractor_mode="layer_norm", layer_norm_first=True, conv_bias=True,
                              normalize=False, latent_temp="(2, 0.1, 0.999995)", loss_weights="[0.1, 0]", **ARCH)
    model = load_model(_save(tmp_path / "old.pt", fs, args=args, cfg=None))
    assert model.config.latent_temp == (2.0, 0.1, 0.999995) and model.config.feature_pen_weight == 0.0
    _compare(import_fairseq_model(fs).eval(), model, torch.randn(1, 4000))


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_code_in_the_pickle_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    fs = Wav2Vec2Model()
    for evil, name in ((_Evil(marker), "system"), (_EvalEvil(), "builtins.eval")):
        path = _save(tmp_path / "evil.pt", fs, cfg={"model": {"_name": "wav2vec2"}, "hook": evil})
        with pytest.raises(S3LError, match=f"evil.pt: refusing to unpickle .*{name}"):
            load_model(path)
    assert not marker.exists()
    # an argparse.Namespace is read, but a payload hidden inside it is still refused
    path = _save(tmp_path / "evil_args.pt", fs, args=argparse.Namespace(arch="wav2vec2", x=_Evil(marker)))
    with pytest.raises(S3LError, match="refusing to unpickle"):
        load_model(path)
    assert not marker.exists()


def test_not_fairseq_checkpoints(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(S3LError, match="other.pt: not a model s3l can load"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(S3LError, match="text.pt: not a readable PyTorch checkpoint"):
        load_model(tmp_path / "text.pt")
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), tmp_path / "script.pt")
    with pytest.raises(S3LError, match="script.pt: a TorchScript archive"):
        load_model(tmp_path / "script.pt")
    fs = Wav2Vec2Model()
    with pytest.raises(S3LError, match="no model configuration"):
        load_fairseq(tmp_path / "x.pt", {"model": fs.state_dict(), "cfg": None, "args": None})
    bad = _cfg("wav2vec2", "group_norm", False)
    bad["model"]["conv_feature_layers"] = "__import__('os').system('true')"
    with pytest.raises(S3LError, match="cannot read config field conv_feature_layers"):
        load_fairseq(tmp_path / "x.pt", {"model": fs.state_dict(), "cfg": bad})
    conformer = _cfg("wav2vec2", "group_norm", False, layer_type="conformer")
    with pytest.raises(S3LError, match="layer_type 'conformer' is not supported"):
        load_fairseq(tmp_path / "x.pt", {"model": fs.state_dict(), "cfg": conformer})
    extra = dict(fs.state_dict(), **{"target_glu.0.weight": torch.zeros(2)})
    with pytest.raises(S3LError, match="unexpected weight 'target_glu.0.weight'"):
        load_fairseq(tmp_path / "x.pt", {"model": extra, "cfg": _cfg("wav2vec2", "group_norm", False)})


def test_fp16_checkpoint_loads_as_float32(tmp_path: Path) -> None:
    fs = _random(Wav2Vec2Model()).eval()
    half = {k: v.half() for k, v in fs.state_dict().items()}
    torch.save({"model": half, "cfg": _cfg("wav2vec2", "group_norm", False)}, tmp_path / "fp16.pt")
    model = load_model(tmp_path / "fp16.pt")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert torch.equal(model.state_dict()["backbone.encoder.layers.1.fc2.weight"],
                       half["encoder.layers.1.fc2.weight"].float())
    fs.load_state_dict({k: v.float() for k, v in half.items()})
    _compare(import_fairseq_model(fs).eval(), model, torch.randn(1, 4000))
