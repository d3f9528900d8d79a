"""torchaudio wav2vec 2.0 / HuBERT models converted into s3l give the same hidden states, CTC outputs and logits."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torchaudio.models import hubert_pretrain_model, wav2vec2_model

from s3l.convert.torchaudio import from_torchaudio
from s3l.errors import S3LError
from s3l.models.hubert import label_logits

TOL = 1e-4
CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2


def _ta_model(mode: str, layer_norm_first: bool, conv_bias: bool = False, dim: int = 48, aux: int | None = None):
    torch.manual_seed(0)
    m = wav2vec2_model(mode, CONV, conv_bias, dim, 0.0, 16, 4, 2, 4, 0.0, 96, 0.0, 0.0, layer_norm_first, 0.0, aux)
    _perturb(m)
    return m.eval()


def _perturb(model: torch.nn.Module) -> None:
    """Move every weight off its initial value (LayerNorm gains, zero biases) so each one matters."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))


def _convert(model: torch.nn.Module, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heads torchaudio lacks are freshly initialised
        return from_torchaudio(model, **kw)


def _max_diffs(ref: list[torch.Tensor], ours: list[torch.Tensor]) -> list[float]:
    assert len(ref) == len(ours)
    for a, b in zip(ref, ours):
        assert a.shape == b.shape
    return [float((a - b).abs().max()) for a, b in zip(ref, ours)]


@pytest.mark.parametrize(
    ("mode", "layer_norm_first", "conv_bias"),
    [("group_norm", False, False), ("layer_norm", True, True)],
    ids=["base-post-ln", "large-pre-ln"],
)
def test_wav2vec2_hidden_states_match(mode: str, layer_norm_first: bool, conv_bias: bool) -> None:
    ta = _ta_model(mode, layer_norm_first, conv_bias)
    model = _convert(ta)
    cfg = model.config
    assert (cfg.extractor_mode, cfg.layer_norm_first, cfg.conv_bias) == (mode, layer_norm_first, conv_bias)
    assert (cfg.conv_dim, cfg.encoder_embed_dim, cfg.encoder_layers, cfg.encoder_attention_heads) == (32, 48, 2, 4)
    assert (cfg.conv_pos, cfg.conv_pos_groups, cfg.encoder_ffn_embed_dim) == (16, 4, 96)
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        ref, _ = ta.extract_features(wave)  # outputs of blocks 1..N
        ours = model.hidden_states(wave)
    assert len(ours) == cfg.encoder_layers + 1
    assert max(_max_diffs(ref, ours[1:])) <= TOL
    # the comparison is not vacuous: the layers differ from each other and from the input
    assert float((ours[1] - ours[2]).abs().max()) > 0.1


def test_padded_batch_matches_on_valid_frames() -> None:
    ta = _ta_model("layer_norm", True, True)
    model = _convert(ta)
    wave = torch.randn(2, 4000)
    lengths = torch.tensor([4000, 2500])
    wave[1, 2500:] = 0.0
    with torch.no_grad():
        ref, frames = ta.extract_features(wave, lengths)
        ours = model.hidden_states(wave, lengths)
    assert frames.tolist() == [12, 7]
    for a, b in zip(ref, ours[1:]):
        assert float((a[0] - b[0]).abs().max()) <= TOL
        assert float((a[1, :7] - b[1, :7]).abs().max()) <= TOL


def test_ctc_head_matches() -> None:
    ta = _ta_model("group_norm", False, aux=5)
    vocab = ["<blank>", "|", "A", "B", "C"]
    model = _convert(ta, vocab=vocab)
    assert model.kind == "ctc" and model.vocab == vocab
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        logits, _ = ta(wave)
        log_probs, out_lengths = model(wave, torch.tensor([4000, 4000]))
    assert out_lengths.tolist() == [12, 12]
    assert float((log_probs - F.log_softmax(logits, -1)).abs().max()) <= TOL


def test_ctc_needs_a_vocabulary_of_the_right_size() -> None:
    ta = _ta_model("group_norm", False, aux=5)
    with pytest.raises(S3LError, match="5 outputs"):
        _convert(ta, vocab=["<blank>", "a"])


def test_hubert_pretrain_model_matches() -> None:
    torch.manual_seed(0)
    ta = hubert_pretrain_model(
        "group_norm", CONV, False, 48, 0.0, 16, 4, 2, 4, 0.0, 96, 0.0, 0.0, False, 0.0,
        0.8, "static", 0.0, 10, False, 1, 0.0, "static", 0.0, 10, False, 1, False, False, 13, 24, None,
    )
    _perturb(ta)
    ta.eval()
    model = _convert(ta)
    assert model.kind == "hubert" and model.num_classes == [13] and model.config.final_dim == 24
    assert model.config.mask_prob == 0.8
    wave = torch.randn(2, 4000)
    with torch.no_grad():
        ref, _ = ta.wav2vec2.extract_features(wave)
        ours = model.hidden_states(wave)
        assert max(_max_diffs(ref, ours[1:])) <= TOL
        # unit logits over every frame: torchaudio's LogitGenerator (column 0 = the target, then all units with
        # the target's own column set to -inf) against s3l's head on the same transformer output
        x = ref[-1]
        labels = torch.randint(0, 13, x.shape[:2])
        every = torch.ones(x.shape[:2], dtype=torch.bool)
        ta_logits, _ = ta.logit_generator(x, labels, every, ~every)
        ours_logits = label_logits(model.final_proj(x[every]), model.label_embs_concat, model.config.logit_temp)
    target = labels[every]
    assert float((ta_logits[:, 0] - ours_logits.gather(1, target[:, None])[:, 0]).abs().max()) <= TOL
    others = ta_logits[:, 1:]
    keep = torch.isfinite(others)
    assert (~keep).sum() == target.numel()  # exactly the target column was excluded
    assert float((others[keep] - ours_logits[keep]).abs().max()) <= TOL


def test_identity_projection_is_dropped_and_other_projections_refused() -> None:
    ta = _ta_model("group_norm", False, dim=32)  # conv_dim == model dim: s3l (like fairseq) has no projection
    with pytest.raises(S3LError, match="not the identity"):
        _convert(ta)
    with torch.no_grad():
        ta.encoder.feature_projection.projection.weight.copy_(torch.eye(32))
        ta.encoder.feature_projection.projection.bias.zero_()
    model = _convert(ta)
    assert model.backbone.post_extract_proj is None
    wave = torch.randn(1, 3000)
    with torch.no_grad():
        ref, _ = ta.extract_features(wave)
        assert max(_max_diffs(ref, model.hidden_states(wave)[1:])) <= TOL
