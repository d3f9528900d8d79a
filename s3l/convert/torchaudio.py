"""torchaudio wav2vec 2.0 / HuBERT modules -> s3l models (e.g. ``torchaudio.pipelines.WAV2VEC2_BASE.get_model()``).

The architecture is read off the module tree (as torchaudio's own fairseq importer does) and the weights renamed:
torchaudio uses the Hugging Face names under ``encoder.feature_projection`` / ``encoder.transformer`` (see
:func:`s3l.convert.hf.backbone_rules`), ``aux`` for the CTC layer, and for ``HuBERTPretrainModel``
``wav2vec2.*``, ``mask_generator.mask_embedding``, ``logit_generator.final_proj`` and
``logit_generator.label_embeddings``. torchaudio's ``extract_features`` returns the outputs of the transformer blocks
without the input, i.e. s3l's ``hidden_states(...)[1:]``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from s3l.convert.common import (
    build_model,
    compile_rules,
    drop_identity_projection,
    float_tensors,
    make_config,
    rename_keys,
    require,
    uniform_conv,
)
from s3l.convert.hf import backbone_rules
from s3l.errors import S3LError
from s3l.models.objectives import kind_of_objective

_W2V = backbone_rules("encoder.feature_projection.", "encoder.transformer.")
_RULES = compile_rules(
    _W2V
    + [("wav2vec2." + p, r) for p, r in _W2V]
    + [(r"mask_generator\.mask_embedding", "backbone.mask_emb"),
       (r"logit_generator\.final_proj\.(weight|bias)", r"final_proj.\1"),
       (r"logit_generator\.label_embeddings", "label_embs_concat"),
       (r"aux\.(weight|bias)", r"proj.\1")]
)


def from_torchaudio(model: nn.Module, vocab: list[str] | None = None, objective: str = "contrastive") -> nn.Module:
    """An s3l model with the weights of a torchaudio ``Wav2Vec2Model`` or ``HuBERTPretrainModel`` (eval mode).

    ``HuBERTPretrainModel`` -> s3l HuBERT model. ``Wav2Vec2Model`` with an ``aux`` layer -> CTC model (``vocab``
    required: ``"<blank>"`` plus one symbol per further output). ``Wav2Vec2Model`` without ``aux`` -> the
    pre-training model of ``objective``, its heads (absent in torchaudio) freshly initialised.
    """
    where = f"torchaudio {type(model).__name__}"
    hubert_pretrain = hasattr(model, "logit_generator") and hasattr(model, "wav2vec2")
    w2v = model.wav2vec2 if hubert_pretrain else model
    require(hasattr(w2v, "feature_extractor") and hasattr(w2v, "encoder"), where, "not a wav2vec 2.0 model")
    fields = _config(w2v, where)
    state = rename_keys(float_tensors(model.state_dict()), _RULES, where, "torchaudio wav2vec 2.0 / HuBERT model")
    num_classes, vocab_out, fresh = None, None, ("backbone.mask_emb",)
    aux = getattr(w2v, "aux", None)
    if hubert_pretrain:
        mg, lg = model.mask_generator, model.logit_generator
        fields.update(objective="hubert", final_dim=lg.final_proj.out_features, mask_prob=mg.mask_prob,
                      mask_length=mg.mask_length, mask_channel_prob=mg.mask_channel_prob,
                      mask_channel_length=mg.mask_channel_length,
                      feature_grad_mult=model.feature_grad_mult if model.feature_grad_mult is not None else 1.0)
        kind, num_classes, fresh = "hubert", [int(lg.label_embeddings.shape[0])], ()
    elif aux is not None:
        if vocab is None or len(vocab) != aux.out_features:
            raise S3LError(f"{where}: its CTC layer has {aux.out_features} outputs; pass a vocabulary of that size")
        kind, vocab_out = "ctc", list(vocab)
        fields["feature_grad_mult"] = 0.0
    else:
        kind = kind_of_objective(objective).name
        fields["objective"] = objective
        fresh += ("final_proj.", "label_embs_concat", "quantizer.", "project_q.")
        num_classes = [1] if kind == "hubert" else None
    cfg = make_config(where, **fields)
    drop_identity_projection(state, cfg, where)
    return build_model(kind, cfg, state, where, num_classes=num_classes, vocab=vocab_out, fresh=fresh)


def _config(w2v: nn.Module, where: str) -> dict[str, Any]:
    convs = list(w2v.feature_extractor.conv_layers)
    dims = [b.conv.out_channels for b in convs]
    dim, kernels, strides = uniform_conv(dims, [b.conv.kernel_size[0] for b in convs],
                                         [b.conv.stride[0] for b in convs], where)
    norms = [b.layer_norm for b in convs]
    if isinstance(norms[0], nn.GroupNorm):
        require(all(n is None for n in norms[1:]), where, "GroupNorm outside the first conv block")
        mode = "group_norm"
    else:
        require(all(n is not None for n in norms), where, "conv blocks without normalisation")
        mode = "layer_norm"
    enc = w2v.encoder
    proj, tr = enc.feature_projection, enc.transformer
    layer = tr.layers[0]
    require(not hasattr(layer.attention, "rel_attn_embed"), where, "WavLM models are not supported")
    return dict(
        extractor_mode=mode, conv_dim=dim, conv_kernels=kernels, conv_strides=strides,
        conv_bias=convs[0].conv.bias is not None, encoder_layers=len(tr.layers),
        encoder_embed_dim=proj.projection.out_features,
        encoder_ffn_embed_dim=layer.feed_forward.intermediate_dense.out_features,
        encoder_attention_heads=layer.attention.num_heads, layer_norm_first=bool(layer.layer_norm_first),
        conv_pos=tr.pos_conv_embed.kernel_size, conv_pos_groups=tr.pos_conv_embed.conv.groups,
        dropout=float(tr.dropout.p), attention_dropout=float(layer.attention.dropout),
        activation_dropout=float(layer.feed_forward.intermediate_dropout.p), dropout_input=float(proj.dropout.p),
        encoder_layerdrop=float(tr.layer_drop),
    )
