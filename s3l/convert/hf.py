"""Hugging Face ``transformers`` wav2vec 2.0 / HuBERT directories <-> s3l models (transformers not needed).

Import (:func:`load_hf`): a directory with ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``, read with s3l's restricted unpickler). ``model_type``
``wav2vec2`` or ``hubert``; the weights decide the kind: ``lm_head`` -> CTC (``Wav2Vec2ForCTC`` /
``HubertForCTC``), ``quantizer`` + ``project_hid`` -> wav2vec 2.0 pre-training (``Wav2Vec2ForPreTraining``), neither
-> the bare ``Wav2Vec2Model`` / ``HubertModel``, whose missing pre-training heads s3l initialises afresh (with a
warning; ``HubertModel`` gets one placeholder unit, ``num_classes=[1]``).

Config fields: ``conv_dim``/``conv_kernel``/``conv_stride`` (equal widths), ``conv_bias``, ``feat_extract_norm``
(``group`` -> ``group_norm``, ``layer`` -> ``layer_norm``), ``do_stable_layer_norm`` -> ``layer_norm_first``,
``num_hidden_layers``, ``hidden_size``, ``intermediate_size``, ``num_attention_heads``,
``num_conv_pos_embeddings``/``_groups`` -> ``conv_pos``/``conv_pos_groups``, ``hidden_dropout`` -> ``dropout``,
``feat_proj_dropout`` -> ``dropout_input``, ``feat_quantizer_dropout`` -> ``dropout_features``, ``layerdrop``,
``final_dropout``, ``mask_time_*`` / ``mask_feature_*`` -> ``mask_*`` / ``mask_channel_*`` (same convention as
fairseq), codevector fields -> ``latent_*`` / ``final_dim``. ``normalize_waveform`` comes from
``preprocessor_config.json``'s ``do_normalize`` when that file exists (HF normalises in the processor, s3l in the
model); otherwise False, so that s3l's ``hidden_states(wave)`` equals the HF model on ``wave``.

Weights: ``feature_extractor.conv_layers.N.{conv,layer_norm}`` -> ``conv_layers.N.{conv,norm}``;
``feature_projection.{layer_norm,projection}`` -> ``layer_norm`` / ``post_extract_proj``; ``masked_spec_embed`` ->
``mask_emb``; ``encoder.pos_conv_embed.conv`` -> ``encoder.pos_conv.conv``; per layer ``attention`` ->
``self_attn``, ``layer_norm`` -> ``self_attn_layer_norm``, ``feed_forward.intermediate_dense``/``output_dense`` ->
``fc1``/``fc2``; heads ``quantizer.codevectors`` -> ``quantizer.vars``, ``project_hid`` -> ``final_proj``,
``lm_head`` -> ``proj``. CTC vocabulary: ``vocab.json`` by id, the ``pad_token_id`` token (HF's CTC blank) renamed
``<blank>`` and moved to index 0 together with its output row.

Hidden states. HF's ``output_hidden_states`` list has the layout of s3l's ``hidden_states``: index 0 = the
transformer input (after the LayerNorm of post-LN models, before any block), n = the output of block n. For pre-LN
models (``do_stable_layer_norm``) the final encoder LayerNorm is not part of s3l's list (as in fairseq's and
torchaudio's layer outputs); it is applied in HF's ``last_hidden_state`` and s3l's ``backbone(wave).x``. transformers
5 records the raw block outputs, so both lists are equal; transformers 4.x replaced the last entry of a pre-LN
model by ``last_hidden_state``, i.e. ``model.backbone.encoder.layer_norm(s3l_states[-1])``.

Export (:func:`export_hf`) writes the same layout back (see its docstring).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3l.convert.common import (
    WEIGHT_G,
    WEIGHT_V,
    build_model,
    compile_rules,
    drop_identity_projection,
    float_tensors,
    make_config,
    rename_keys,
    require,
    uniform_conv,
)
from s3l.errors import S3LError

MODEL_TYPES = ("wav2vec2", "hubert")


def backbone_rules(projection: str, transformer: str) -> list[tuple[str, str | None]]:
    """HF-style names (also torchaudio's, with other prefixes) -> s3l backbone names."""
    p, t = projection.replace(".", r"\."), transformer.replace(".", r"\.")
    L = rf"{t}layers\.(\d+)\."
    return [
        (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)",
         r"backbone.feature_extractor.conv_layers.\1.conv.\2"),
        (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)",
         r"backbone.feature_extractor.conv_layers.\1.norm.\2"),
        (rf"{p}layer_norm\.(weight|bias)", r"backbone.layer_norm.\1"),
        (rf"{p}projection\.(weight|bias)", r"backbone.post_extract_proj.\1"),
        (rf"{t}pos_conv_embed\.conv\.(weight_g|parametrizations\.weight\.original0)", WEIGHT_G),
        (rf"{t}pos_conv_embed\.conv\.(weight_v|parametrizations\.weight\.original1)", WEIGHT_V),
        (rf"{t}pos_conv_embed\.conv\.bias", "backbone.encoder.pos_conv.conv.bias"),
        (rf"{t}layer_norm\.(weight|bias)", r"backbone.encoder.layer_norm.\1"),
        (L + r"attention\.(q|k|v|out)_proj\.(weight|bias)", r"backbone.encoder.layers.\1.self_attn.\2_proj.\3"),
        (L + r"layer_norm\.(weight|bias)", r"backbone.encoder.layers.\1.self_attn_layer_norm.\2"),
        (L + r"feed_forward\.intermediate_dense\.(weight|bias)", r"backbone.encoder.layers.\1.fc1.\2"),
        (L + r"feed_forward\.output_dense\.(weight|bias)", r"backbone.encoder.layers.\1.fc2.\2"),
        (L + r"final_layer_norm\.(weight|bias)", r"backbone.encoder.layers.\1.final_layer_norm.\2"),
    ]


_IMPORT = compile_rules(
    [(r"(?:wav2vec2|hubert)\." + p, r) for p, r in backbone_rules("feature_projection.", "encoder.")]
    + backbone_rules("feature_projection.", "encoder.")
    + [(r"(?:wav2vec2\.|hubert\.)?masked_spec_embed", "backbone.mask_emb"),
       (r"quantizer\.codevectors", "quantizer.vars"),
       (r"quantizer\.weight_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
       (r"project_hid\.(weight|bias)", r"final_proj.\1"),
       (r"project_q\.(weight|bias)", r"project_q.\1"),
       (r"lm_head\.(weight|bias)", r"proj.\1")]
)


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise S3LError(f"{directory}: not a Hugging Face model directory (no config.json)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S3LError(f"{path}: not valid JSON ({e})") from None
    require(isinstance(cfg, dict), str(path), "not a JSON object")
    return cfg


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """The state dict of a HF directory: safetensors (single or sharded) or pytorch_model.bin."""
    from safetensors.torch import load_file

    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    files: list[Path] = []
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise S3LError(f"{index}: not a safetensors index (no weight_map)") from None
        files = [directory / f for f in sorted(set(weight_map.values()))]
    if files:
        state: dict[str, torch.Tensor] = {}
        for f in files:
            try:
                state.update(load_file(str(f)))
            except Exception as e:
                raise S3LError(f"{f}: not a readable safetensors file ({e})") from None
        return state
    bin_path = directory / "pytorch_model.bin"
    if bin_path.is_file():
        from s3l.convert.safe_pickle import read_torch_file

        state = read_torch_file(bin_path)
        require(isinstance(state, dict), str(bin_path), "does not hold a state dict")
        return state
    raise S3LError(f"{directory}: Hugging Face directory without model.safetensors or pytorch_model.bin")


def load_hf(directory: str | Path) -> nn.Module:
    """A Hugging Face wav2vec 2.0 / HuBERT directory as an s3l model (eval mode)."""
    directory = Path(directory)
    where = str(directory)
    hf = read_config(directory)
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise S3LError(f"{where}: unsupported model_type {model_type!r} (s3l reads {', '.join(MODEL_TYPES)})")
    weights = float_tensors(read_weights(directory))
    ctc = any(k.startswith("lm_head.") for k in weights)
    pretrain = any(k.startswith("quantizer.") for k in weights)
    cfg = _config_from_hf(hf, where, model_type, ctc, _do_normalize(directory))
    state = rename_keys(weights, _IMPORT, where, f"Hugging Face {model_type} model")
    drop_identity_projection(state, cfg, where)
    if ctc:
        vocab, order = _ctc_vocab(directory, hf, int(state["proj.weight"].shape[0]))
        state["proj.weight"], state["proj.bias"] = state["proj.weight"][order], state["proj.bias"][order]
        return build_model("ctc", cfg, state, where, vocab=vocab, fresh=("backbone.mask_emb",))
    if model_type == "wav2vec2":
        fresh = ("backbone.mask_emb",) if pretrain else ("backbone.mask_emb", "quantizer.", "project_q.", "final_proj.")
        return build_model("wav2vec2", cfg, state, where, fresh=fresh)
    return build_model("hubert", cfg, state, where, num_classes=[1],
                       fresh=("backbone.mask_emb", "final_proj.", "label_embs_concat"))


def _config_from_hf(hf: dict, where: str, model_type: str, ctc: bool, normalize: bool):  # -> ModelConfig
    def get(name: str, default: Any) -> Any:
        v = hf.get(name)
        return default if v is None else v

    for name, want in (("hidden_act", "gelu"), ("feat_extract_activation", "gelu")):
        require(get(name, "gelu") == want, where, f"{name}={hf.get(name)!r} is not supported (GELU only)")
    require(abs(float(get("layer_norm_eps", 1e-5)) - 1e-5) < 1e-12, where, "layer_norm_eps other than 1e-5")
    require(not hf.get("add_adapter"), where, "models with an adapter (add_adapter) are not supported")
    require(not hf.get("conv_pos_batch_norm"), where, "conv_pos_batch_norm is not supported")
    require(get("feat_proj_layer_norm", True) is not False, where,
            "feat_proj_layer_norm=false is not supported (s3l always normalises the features)")
    norm = {"group": "group_norm", "layer": "layer_norm"}.get(get("feat_extract_norm", "group"))
    require(norm is not None, where, f"unknown feat_extract_norm {hf.get('feat_extract_norm')!r}")
    conv_dim, kernels, strides = uniform_conv(
        list(get("conv_dim", [512] * 7)), list(get("conv_kernel", [10, 3, 3, 3, 3, 2, 2])),
        list(get("conv_stride", [5, 2, 2, 2, 2, 2, 2])), where)
    spec = bool(get("apply_spec_augment", True))
    fields: dict[str, Any] = dict(
        objective="hubert" if model_type == "hubert" else "contrastive",
        extractor_mode=norm, conv_dim=conv_dim, conv_kernels=kernels, conv_strides=strides,
        conv_bias=bool(get("conv_bias", False)), normalize_waveform=normalize,
        encoder_layers=int(get("num_hidden_layers", 12)), encoder_embed_dim=int(get("hidden_size", 768)),
        encoder_ffn_embed_dim=int(get("intermediate_size", 3072)),
        encoder_attention_heads=int(get("num_attention_heads", 12)),
        layer_norm_first=bool(get("do_stable_layer_norm", False)),
        conv_pos=int(get("num_conv_pos_embeddings", 128)),
        conv_pos_groups=int(get("num_conv_pos_embedding_groups", 16)),
        dropout=float(get("hidden_dropout", 0.1)), attention_dropout=float(get("attention_dropout", 0.1)),
        activation_dropout=float(get("activation_dropout", 0.1)), dropout_input=float(get("feat_proj_dropout", 0.0)),
        dropout_features=float(get("feat_quantizer_dropout", 0.0)), encoder_layerdrop=float(get("layerdrop", 0.1)),
        final_dropout=float(get("final_dropout", 0.1)),
        mask_prob=float(get("mask_time_prob", 0.05)) if spec else 0.0, mask_length=int(get("mask_time_length", 10)),
        mask_min_masks=int(get("mask_time_min_masks", 2)),
        mask_channel_prob=float(get("mask_feature_prob", 0.0)) if spec else 0.0,
        mask_channel_length=int(get("mask_feature_length", 10)),
    )
    if model_type == "wav2vec2":
        fields.update(latent_vars=int(get("num_codevectors_per_group", 320)),
                      latent_groups=int(get("num_codevector_groups", 2)),
                      latent_dim=int(get("codevector_dim", 256)), final_dim=int(get("proj_codevector_dim", 256)),
                      logit_temp=float(get("contrastive_logits_temperature", 0.1)),
                      num_negatives=int(get("num_negatives", 100)),
                      diversity_weight=float(get("diversity_loss_weight", 0.1)))
    if ctc:
        fields["feature_grad_mult"] = 0.0  # fine-tuning keeps the feature encoder frozen (fairseq and HF recipes)
    return make_config(where, **fields)


def _do_normalize(directory: Path) -> bool:
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("do_normalize", False))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise S3LError(f"{path}: not a valid preprocessor config ({e})") from None


def _ctc_vocab(directory: Path, hf: dict, num_outputs: int) -> tuple[list[str], list[int]]:
    """(s3l vocabulary, output-row order): HF's blank (pad_token_id) first as ``<blank>``, the rest by id."""
    path = directory / "vocab.json"
    if not path.is_file():
        raise S3LError(f"{directory}: a CTC model needs its vocabulary, but vocab.json is missing")
    try:
        token_ids = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise S3LError(f"{path}: not valid JSON ({e})") from None
    require(isinstance(token_ids, dict) and all(isinstance(v, int) for v in token_ids.values()), str(path),
            "expected one {token: id} object (multi-lingual vocabularies are not supported)")
    by_id = {i: t for t, i in token_ids.items() if 0 <= i < num_outputs}
    missing = [i for i in range(num_outputs) if i not in by_id]
    require(not missing, str(path), f"no token for output {missing[0] if missing else 0} of {num_outputs}")
    blank = int(hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0)
    require(0 <= blank < num_outputs, str(path), f"pad_token_id {blank} (the CTC blank) is out of range")
    require("<blank>" not in token_ids or token_ids["<blank>"] == blank, str(path),
            "'<blank>' names a token other than the CTC blank (pad_token_id)")
    order = [blank] + [i for i in range(num_outputs) if i != blank]
    return ["<blank>"] + [by_id[i] for i in order[1:]], order
