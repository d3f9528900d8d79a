"""Export an s3l model to the Hugging Face ``transformers`` layout (``config.json`` + ``model.safetensors``).

==================  ==========================================  ===============================================
s3l model           transformers class                          files
==================  ==========================================  ===============================================
wav2vec2 (contr.)   ``Wav2Vec2ForPreTraining`` (all weights)    config.json, model.safetensors,
                                                                preprocessor_config.json
hubert              ``HubertModel`` (HF has no HuBERT           same; ``final_proj`` and ``label_embs_concat``
                    pre-training class)                         are not exported
ctc                 ``Wav2Vec2ForCTC`` / ``HubertForCTC``       same plus vocab.json, tokenizer_config.json
==================  ==========================================  ===============================================

The positional convolution's weight norm is written as ``weight_g`` / ``weight_v``, which every transformers
version reads. A model with ``conv_dim == encoder_embed_dim`` (no feature projection in s3l) gets an identity
projection. ``preprocessor_config.json`` carries ``do_normalize = normalize_waveform`` (HF normalises in the
processor). The CTC vocabulary keeps s3l's order; the blank (index 0, HF's ``pad_token_id``) is written as
``<pad>``, and a ``<pad>`` symbol of a fairseq-derived vocabulary becomes ``<s>``, which is exactly the layout of
the vocabularies transformers converted from fairseq.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3l.convert.common import WEIGHT_G, WEIGHT_V
from s3l.errors import S3LError
from s3l.fileio import atomic_open, atomic_write_text, check_overwrite

_BACKBONE = [
    (r"backbone\.feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)",
     r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"backbone\.feature_extractor\.conv_layers\.(\d+)\.norm\.(weight|bias)",
     r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"backbone\.layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"backbone\.post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"backbone\.mask_emb", "masked_spec_embed"),
    (re.escape(WEIGHT_G), "encoder.pos_conv_embed.conv.weight_g"),
    (re.escape(WEIGHT_V), "encoder.pos_conv_embed.conv.weight_v"),
    (r"backbone\.encoder\.pos_conv\.conv\.bias", "encoder.pos_conv_embed.conv.bias"),
    (r"backbone\.encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"backbone\.encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)",
     r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"backbone\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"backbone\.encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"backbone\.encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"backbone\.encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
]
_HEADS = {
    "wav2vec2": [(r"quantizer\.vars", "quantizer.codevectors"),
                 (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
                 (r"final_proj\.(weight|bias)", r"project_hid.\1"),
                 (r"project_q\.(weight|bias)", r"project_q.\1")],
    "hubert": [(r"final_proj\..*|label_embs_concat", None)],
    "ctc": [(r"proj\.(weight|bias)", r"lm_head.\1")],
}


def hf_files(out_dir: str | Path, model: nn.Module) -> list[Path]:
    """The files :func:`export_hf` writes for ``model``."""
    out = Path(out_dir)
    names = ["config.json", "model.safetensors", "preprocessor_config.json"]
    if model.kind == "ctc":
        names += ["vocab.json", "tokenizer_config.json"]
    return [out / n for n in names]


def export_hf(model: nn.Module, out_dir: str | Path, force: bool = False) -> list[Path]:
    """Write ``model`` (an s3l wav2vec2 / hubert / ctc model) as a transformers directory; returns the files."""
    from safetensors.torch import save

    kind = getattr(model, "kind", None)
    if kind not in _HEADS:
        raise TypeError(f"cannot export a {type(model).__name__}: not an s3l model")
    cfg = model.config
    if cfg.front_end != "conv":
        raise S3LError(f"this model has a {cfg.front_end} front end; Hugging Face wav2vec 2.0 / HuBERT models have "
                       "the convolutional waveform encoder only (keep it as an s3l checkpoint)")
    files = hf_files(out_dir, model)
    check_overwrite(files, force)
    hf_type = "hubert" if cfg.objective == "hubert" else "wav2vec2"
    arch = {"wav2vec2": "Wav2Vec2ForPreTraining", "hubert": "HubertModel",
            "ctc": "HubertForCTC" if hf_type == "hubert" else "Wav2Vec2ForCTC"}[kind]
    prefix = "" if arch == "HubertModel" else f"{hf_type}."
    state = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    if cfg.conv_dim == cfg.encoder_embed_dim:  # HF always projects; s3l/fairseq skip an identity projection
        state["backbone.post_extract_proj.weight"] = torch.eye(cfg.conv_dim)
        state["backbone.post_extract_proj.bias"] = torch.zeros(cfg.conv_dim)
    hf_cfg = _hf_config(cfg, hf_type, arch)
    if not (hf_cfg["mask_time_prob"] > 0 or hf_cfg["mask_feature_prob"] > 0):
        state.pop("backbone.mask_emb")  # transformers has no masked_spec_embed without SpecAugment
    rules = [(re.compile(p), (prefix + r) if r is not None else None) for p, r in _BACKBONE]
    rules += [(re.compile(p), r) for p, r in _HEADS[kind]]
    hf_state = {}
    for key, value in state.items():
        m, repl = next(((m, r) for p, r in rules if (m := p.fullmatch(key))), (None, None))
        if m is None:
            raise RuntimeError(f"no Hugging Face name for s3l weight {key}")
        if repl is not None:
            hf_state[m.expand(repl)] = value

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "ctc":
        tokens, tok_cfg = _hf_vocab(model.vocab)
        hf_cfg.update(vocab_size=len(tokens), pad_token_id=0, bos_token_id=tokens.index("<s>") if "<s>" in tokens
                      else None, eos_token_id=tokens.index("</s>") if "</s>" in tokens else None)
        atomic_write_text(out / "vocab.json", json.dumps({t: i for i, t in enumerate(tokens)}, indent=2,
                                                        ensure_ascii=False) + "\n")
        atomic_write_text(out / "tokenizer_config.json", json.dumps(tok_cfg, indent=2) + "\n")
    with atomic_open(out / "model.safetensors", "wb") as f:
        f.write(save(hf_state, metadata={"format": "pt"}))
    atomic_write_text(out / "config.json", json.dumps(hf_cfg, indent=2) + "\n")
    atomic_write_text(out / "preprocessor_config.json", json.dumps({
        "feature_extractor_type": "Wav2Vec2FeatureExtractor", "feature_size": 1, "sampling_rate": 16000,
        "padding_value": 0.0, "padding_side": "right", "do_normalize": bool(cfg.normalize_waveform),
        # transformers' convention: models with a GroupNorm feature encoder are run without an attention mask
        "return_attention_mask": cfg.extractor_mode == "layer_norm",
    }, indent=2) + "\n")
    return files


def _hf_config(cfg: Any, hf_type: str, arch: str) -> dict[str, Any]:
    n = len(cfg.conv_kernels)
    spec = cfg.mask_prob > 0 or cfg.mask_channel_prob > 0
    c: dict[str, Any] = {
        "model_type": hf_type, "architectures": [arch],
        "conv_dim": [cfg.conv_dim] * n, "conv_kernel": list(cfg.conv_kernels), "conv_stride": list(cfg.conv_strides),
        "num_feat_extract_layers": n, "conv_bias": cfg.conv_bias,
        "feat_extract_norm": "layer" if cfg.extractor_mode == "layer_norm" else "group",
        "feat_extract_activation": "gelu", "do_stable_layer_norm": cfg.layer_norm_first,
        "hidden_size": cfg.encoder_embed_dim, "num_hidden_layers": cfg.encoder_layers,
        "intermediate_size": cfg.encoder_ffn_embed_dim, "num_attention_heads": cfg.encoder_attention_heads,
        "hidden_act": "gelu", "layer_norm_eps": 1e-5, "initializer_range": 0.02,
        "num_conv_pos_embeddings": cfg.conv_pos, "num_conv_pos_embedding_groups": cfg.conv_pos_groups,
        "hidden_dropout": cfg.dropout, "attention_dropout": cfg.attention_dropout,
        "activation_dropout": cfg.activation_dropout, "feat_proj_dropout": cfg.dropout_input,
        "layerdrop": cfg.encoder_layerdrop, "final_dropout": cfg.final_dropout,
        "apply_spec_augment": spec, "mask_time_prob": cfg.mask_prob if spec else 0.0,
        "mask_time_length": cfg.mask_length, "mask_time_min_masks": cfg.mask_min_masks,
        "mask_feature_prob": cfg.mask_channel_prob if spec else 0.0, "mask_feature_length": cfg.mask_channel_length,
        "mask_feature_min_masks": 0, "torch_dtype": "float32",
    }
    if hf_type == "hubert":
        c["feat_proj_layer_norm"] = True
    else:
        c.update(num_codevectors_per_group=cfg.latent_vars, num_codevector_groups=cfg.latent_groups,
                 codevector_dim=cfg.vq_dim, proj_codevector_dim=cfg.final_dim,
                 contrastive_logits_temperature=cfg.logit_temp, num_negatives=cfg.num_negatives,
                 diversity_loss_weight=cfg.diversity_weight, feat_quantizer_dropout=cfg.dropout_features)
    return c


def _hf_vocab(vocab: list[str]) -> tuple[list[str], dict[str, Any]]:
    """HF token list (blank first, named ``<pad>``) and the tokenizer config."""
    tokens = list(vocab)
    if "<pad>" in tokens and "<s>" not in tokens:
        tokens[tokens.index("<pad>")] = "<s>"  # fairseq's <pad> row: HF calls fairseq's index 1 "<s>"
    pad = "<pad>" if "<pad>" not in tokens else "<blank>"
    tokens[0] = pad
    if len(set(tokens)) != len(tokens):
        raise S3LError("the CTC vocabulary has a duplicate symbol after renaming the blank")
    tok_cfg = {
        "tokenizer_class": "Wav2Vec2CTCTokenizer", "pad_token": pad, "unk_token": "<unk>", "bos_token": "<s>",
        "eos_token": "</s>", "word_delimiter_token": "|", "do_lower_case": False,
        "replace_word_delimiter_char": " ",
    }
    return tokens, tok_cfg
