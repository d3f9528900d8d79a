"""fairseq wav2vec 2.0 / HuBERT checkpoints (pre-trained, or CTC fine-tuned) -> s3l models, without fairseq.

Reading. A fairseq ``.pt`` is a ``torch.save`` dict with ``model`` (the state dict) and the configuration either as
``cfg`` (hydra era: ``cfg.model``, ``cfg.task``, ``cfg.criterion``; pickled as ``omegaconf.DictConfig`` or, after
2021, as plain dicts) or as ``args`` (an ``argparse.Namespace`` with every field flat). fairseq itself is never
imported: :func:`s3l.convert.safe_pickle.read_torch_file` reads the file with ``torch.load(weights_only=True)`` or,
when the config objects make torch refuse, with a restricted unpickler that turns omegaconf / argparse / fairseq
classes into inert stand-ins and refuses every other global (see that module). The stand-ins become plain dicts;
``${a.b}`` interpolations are resolved against the config root.

Config. ``cfg.model`` fields have the names of :class:`s3l.models.ModelConfig` (which copies fairseq's), except:
``extractor_mode: default`` = ``group_norm``; ``conv_feature_layers`` (a Python expression, read with a safe
literal parser) -> ``conv_dim`` / ``conv_kernels`` / ``conv_strides``; ``final_dim: 0`` = the model dimension;
``task.normalize`` -> ``normalize_waveform``; ``criterion.loss_weights`` -> ``diversity_weight`` and
``feature_pen_weight`` (wav2vec 2.0) or ``feature_pen_weight`` (HuBERT); HuBERT ``label_rate`` -> ``label_rates``.
A CTC checkpoint (``_name: wav2vec_ctc`` / ``hubert_ctc``) keeps the pre-training config in ``w2v_args`` and
overrides dropout, masking (``apply_mask``), ``layerdrop`` and ``final_dropout``.

Weights. ``feature_extractor.conv_layers.N.0`` -> ``...conv_layers.N.conv``; the GroupNorm ``conv_layers.0.2`` and
the LayerNorms ``conv_layers.N.2.1`` -> ``...conv_layers.N.norm``; ``encoder.pos_conv.0.weight_g/weight_v`` (or
``parametrizations.weight.original0/1``) -> ``encoder.pos_conv.conv.parametrizations.weight.original0/1``; the
rest keeps its name under ``backbone.`` (``encoder.layers.N.self_attn.k_proj``, ``fc1``, ``layer_norm``,
``post_extract_proj``, ``mask_emb``, ...). Heads: ``quantizer.vars``, ``quantizer.weight_proj``, ``project_q``,
``final_proj`` (wav2vec 2.0); ``final_proj``, ``label_embs_concat`` (HuBERT, one label set: its K counts fairseq's
four special symbols); CTC: ``w2v_encoder.w2v_model.*`` -> backbone, ``w2v_encoder.proj`` -> ``proj``.

Vocabulary. fairseq CTC checkpoints do not contain their dictionary: it is read from ``dict.<labels>.txt`` next to
the checkpoint (or in ``cfg.task.data``). fairseq's Dictionary puts ``<s> <pad> </s> <unk>`` before the file's
symbols and CTC uses index 0 (``<s>``) as the blank, so the s3l vocabulary is
``["<blank>", "<pad>", "</s>", "<unk>", *symbols]`` with the output layer unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from torch import nn

from s3l.convert.common import (
    WEIGHT_G,
    WEIGHT_V,
    Rule,
    build_model,
    compile_rules,
    conv_layers,
    float_tensors,
    make_config,
    rename_keys,
    require,
    safe_literal,
)
from s3l.convert.safe_pickle import read_torch_file, to_plain
from s3l.errors import S3LError
from s3l.manifest import read_dict
from s3l.models.objectives import kind_of_objective

_BACKBONE: list[Rule] = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"backbone.feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"backbone.feature_extractor.conv_layers.0.norm.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
     r"backbone.feature_extractor.conv_layers.\1.norm.\2"),
    (r"(layer_norm|post_extract_proj)\.(weight|bias)", r"backbone.\1.\2"),
    (r"mask_emb", "backbone.mask_emb"),
    (r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)", WEIGHT_G),
    (r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)", WEIGHT_V),
    (r"encoder\.pos_conv\.0\.bias", "backbone.encoder.pos_conv.conv.bias"),
    (r"encoder\.(layers\.\d+\.(self_attn\.(q|k|v|out)_proj|self_attn_layer_norm|fc1|fc2|final_layer_norm)"
     r"\.(weight|bias))", r"backbone.encoder.\1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"backbone.encoder.layer_norm.\1"),
    (r"(.*\.)?_?version", None),
]
_WAV2VEC2_HEADS: list[Rule] = [
    (r"quantizer\.(vars|weight_proj\.weight|weight_proj\.bias)", r"quantizer.\1"),
    (r"(project_q|final_proj)\.(weight|bias)", r"\1.\2"),
]
_HUBERT_HEADS: list[Rule] = [
    (r"final_proj\.(weight|bias)", r"final_proj.\1"),
    (r"label_embs_concat", "label_embs_concat"),
]
_PRETRAIN_ONLY = r"(quantizer\..*|project_q\..*|final_proj\..*|label_embs_concat|target_glu\..*)"

_RULES = {
    "wav2vec2": compile_rules(_BACKBONE + _WAV2VEC2_HEADS),
    "hubert": compile_rules(_BACKBONE + _HUBERT_HEADS),
    "ctc": compile_rules(
        [(r"w2v_encoder\.w2v_model\." + _PRETRAIN_ONLY, None)]
        + [(r"w2v_encoder\.w2v_model\." + p, r) for p, r in _BACKBONE]
        + [(r"w2v_encoder\.proj\.(weight|bias)", r"proj.\1")]
    ),
}

# fairseq's own defaults (Wav2Vec2Config / HubertConfig) for fields a checkpoint might not spell out.
_DEFAULT_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default", "conv_bias": False, "feature_grad_mult": 1.0, "encoder_layers": 12,
    "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072, "encoder_attention_heads": 12,
    "layer_norm_first": False, "conv_pos": 128, "conv_pos_groups": 16, "dropout": 0.1, "attention_dropout": 0.1,
    "activation_dropout": 0.0, "dropout_input": 0.0, "dropout_features": 0.0, "encoder_layerdrop": 0.0,
    "mask_prob": 0.65, "mask_length": 10, "mask_channel_prob": 0.0, "mask_channel_length": 10, "final_dim": 0,
    "logit_temp": 0.1, "latent_vars": 320, "latent_groups": 2, "latent_dim": 0,
    "latent_temp": (2.0, 0.5, 0.999995), "num_negatives": 100,
}
_CTC_OVERRIDES = {
    "dropout": "dropout", "attention_dropout": "attention_dropout", "activation_dropout": "activation_dropout",
    "dropout_input": "dropout_input", "final_dropout": "final_dropout", "mask_prob": "mask_prob",
    "mask_length": "mask_length", "mask_channel_prob": "mask_channel_prob",
    "mask_channel_length": "mask_channel_length", "layerdrop": "encoder_layerdrop",
    "feature_grad_mult": "feature_grad_mult",
}
_SPECIALS = ["<blank>", "<pad>", "</s>", "<unk>"]  # fairseq Dictionary indices 0-3; index 0 (<s>) is CTC's blank


def is_fairseq_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("model"), dict) and ("cfg" in obj or "args" in obj)


def load_fairseq(path: str | Path, ckpt: Any = None) -> nn.Module:
    """A fairseq wav2vec 2.0 / HuBERT checkpoint as an s3l model (eval mode); ``ckpt`` = the file, already read."""
    path = Path(path)
    where = str(path)
    if ckpt is None:
        ckpt = read_torch_file(path)
    if not is_fairseq_checkpoint(ckpt):
        raise S3LError(f"{where}: not a fairseq checkpoint (no 'model' weights with 'cfg' or 'args')")
    weights = float_tensors(ckpt["model"])
    sec = _sections(ckpt, where)
    if any(k.startswith("w2v_encoder.") for k in weights):
        return _load_ctc(path, weights, sec)
    objective = "hubert" if "label_embs_concat" in weights or _name(sec) == "hubert" else "contrastive"
    cfg = _model_config(sec, where, objective)
    kind = kind_of_objective(objective).name
    state = rename_keys(weights, _RULES[kind], where, f"fairseq {kind} checkpoint")
    num_classes = None
    if kind == "hubert":
        require("label_embs_concat" in state, where, "HuBERT checkpoint without label_embs_concat")
        num_classes = [int(state["label_embs_concat"].shape[0])]
    return build_model(kind, cfg, state, where, num_classes=num_classes)


def _load_ctc(path: Path, weights: dict, sec: dict[str, dict]) -> nn.Module:
    where = str(path)
    w2v_args = sec["model"].get("w2v_args")
    require(isinstance(w2v_args, dict), where,
            "CTC checkpoint without its pre-training config (w2v_args); s3l does not follow w2v_path")
    pre = _sections({"cfg": w2v_args} if isinstance(w2v_args.get("model"), dict) else {"args": w2v_args}, where)
    hubert = "w2v_encoder.w2v_model.label_embs_concat" in weights or _name(pre) == "hubert"
    cfg = _model_config(pre, where, "hubert" if hubert else "contrastive")
    ft = sec["model"]
    changes = {dst: ft[src] for src, dst in _CTC_OVERRIDES.items() if ft.get(src) is not None}
    if ft.get("apply_mask") is False:
        changes.update(mask_prob=0.0, mask_channel_prob=0.0)
    if sec["task"].get("normalize") is not None:
        changes["normalize_waveform"] = bool(sec["task"]["normalize"])
    try:
        cfg = cfg.replace(**changes)
    except S3LError as e:
        raise S3LError(f"{where}: {e}") from None
    state = rename_keys(weights, _RULES["ctc"], where, "fairseq CTC checkpoint")
    require("proj.weight" in state, where, "CTC checkpoint without w2v_encoder.proj")
    vocab = _ctc_vocab(path, sec["task"], int(state["proj.weight"].shape[0]))
    return build_model("ctc", cfg, state, where, vocab=vocab)


def _ctc_vocab(path: Path, task: dict, num_outputs: int) -> list[str]:
    labels = task.get("labels") or "ltr"
    labels = labels[0] if isinstance(labels, list) else labels
    name = f"dict.{labels}.txt"
    candidates = [path.parent / name]
    if isinstance(task.get("data"), str):
        candidates.append(Path(task["data"]) / name)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise S3LError(f"{path}: a fairseq CTC checkpoint does not contain its dictionary; put {name} (the "
                       "fine-tuning dictionary) next to it")
    vocab = _SPECIALS + read_dict(found)
    if len(vocab) != num_outputs:
        raise S3LError(f"{found}: {len(vocab) - 4} symbols plus fairseq's 4 special symbols make {len(vocab)} "
                       f"outputs, but the checkpoint's output layer has {num_outputs}")
    return vocab


def _sections(ckpt: dict, where: str) -> dict[str, dict]:
    """{"model", "task", "criterion"} config dicts from a checkpoint's ``cfg`` (or flat ``args``)."""
    cfg = to_plain(ckpt.get("cfg"))
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        cfg = _resolve_interpolations(cfg)
        return {"model": cfg["model"], "task": cfg.get("task") or {}, "criterion": cfg.get("criterion") or {}}
    args = to_plain(ckpt.get("args"))
    if isinstance(args, dict):
        return {"model": args, "task": args, "criterion": args}
    raise S3LError(f"{where}: no model configuration in the checkpoint (neither cfg.model nor args)")


_INTERP = re.compile(r"\$\{([\w.]+)\}")


def _resolve_interpolations(root: dict) -> dict:
    """Replace values that are exactly ``${a.b.c}`` by the value at that path of ``root`` (absolute paths only)."""

    def lookup(dotted: str) -> Any:
        node: Any = root
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def walk(node: Any, depth: int = 0) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, depth) for v in node]
        if isinstance(node, str) and depth < 5 and (m := _INTERP.fullmatch(node)):
            return walk(lookup(m.group(1)), depth + 1)
        return node

    return walk(root)


def _name(sec: dict[str, dict]) -> str:
    m = sec["model"]
    return str(m.get("_name") or m.get("arch") or "").split("_")[0]


def _model_config(sec: dict[str, dict], where: str, objective: str):  # -> ModelConfig
    m, task, crit = sec["model"], sec["task"], sec["criterion"]

    def get(name: str) -> Any:
        v = m.get(name)
        return _DEFAULTS.get(name) if v is None else v

    require(str(m.get("activation_fn") or "gelu") == "gelu", where, f"activation_fn {m.get('activation_fn')!r} "
            "is not supported (GELU only)")
    require(str(m.get("layer_type") or "transformer") == "transformer", where,
            f"layer_type {m.get('layer_type')!r} is not supported (transformer only)")
    require(int(m.get("pos_conv_depth") or 1) == 1, where, "pos_conv_depth > 1 (data2vec) is not supported")
    mode = {"default": "group_norm", "group_norm": "group_norm", "layer_norm": "layer_norm"}.get(
        str(get("extractor_mode")))
    require(mode is not None, where, f"unknown extractor_mode {m.get('extractor_mode')!r}")
    conv_dim, kernels, strides = conv_layers(m.get("conv_feature_layers") or _DEFAULT_CONV, where)
    dim = int(get("encoder_embed_dim"))
    fields: dict[str, Any] = {
        name: get(name)
        for name in ("conv_bias", "feature_grad_mult", "encoder_layers", "encoder_ffn_embed_dim",
                     "encoder_attention_heads", "layer_norm_first", "conv_pos", "conv_pos_groups", "dropout",
                     "attention_dropout", "activation_dropout", "dropout_input", "dropout_features",
                     "encoder_layerdrop", "mask_prob", "mask_length", "mask_channel_prob", "mask_channel_length",
                     "logit_temp")
    }
    fields.update(objective=objective, extractor_mode=mode, conv_dim=conv_dim, conv_kernels=kernels,
                  conv_strides=strides, encoder_embed_dim=dim, final_dim=int(get("final_dim")) or dim,
                  normalize_waveform=bool(task.get("normalize", m.get("normalize", False))))
    weights = safe_literal(crit.get("loss_weights"), where, "loss_weights")
    if objective == "contrastive":
        require(m.get("quantize_targets", True) is not False, where,
                "quantize_targets=False is not supported (s3l's contrastive targets are always quantized)")
        require(not m.get("quantize_input"), where, "quantize_input=True is not supported")
        temp = safe_literal(get("latent_temp"), where, "latent_temp")
        fields.update(latent_vars=get("latent_vars"), latent_groups=get("latent_groups"),
                      latent_dim=get("latent_dim"), latent_temp=tuple(float(t) for t in temp),
                      num_negatives=get("num_negatives"))
        if isinstance(weights, (list, tuple)) and len(weights) == 2:
            fields.update(diversity_weight=float(weights[0]), feature_pen_weight=float(weights[1]))
    else:
        labels = task.get("labels")
        require(not isinstance(labels, list) or len(labels) <= 1, where,
                "HuBERT checkpoints with several label sets are not supported")
        rate = m.get("label_rate", task.get("label_rate"))
        require(rate is not None and float(rate) > 0, where, "HuBERT checkpoint without a positive label_rate")
        fields["label_rates"] = (float(rate),)
        if isinstance(weights, (list, tuple)) and len(weights) == 1:
            fields["feature_pen_weight"] = float(weights[0])
        pm, pu = crit.get("pred_masked_weight"), crit.get("pred_nomask_weight")
        if pm is not None and pu is not None and float(pm) + float(pu) > 0:
            fields["masked_weight"] = float(pm) / (float(pm) + float(pu))
    return make_config(where, **fields)
