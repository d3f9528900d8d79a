"""Feature encoder, transformer and backbone: lengths, padding invariance, attention, LayerDrop, hidden states."""

import pytest
import torch

from s3l.errors import S3LError
from s3l.models import encoder_frames, preset
from s3l.models.backbone import Backbone
from s3l.models.feature_encoder import FeatureEncoder, LogMelFrontEnd, normalize_waveform
from s3l.models.transformer import PositionalConv, SelfAttention, TransformerEncoder


def _micro(**kw):
    """A very small backbone config (same structure as the presets)."""
    base = dict(conv_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=32)
    base.update(kw)
    return preset("tiny").replace(**base)


@pytest.mark.parametrize("n", [399, 400, 401, 719, 720, 16000, 16401, 35555])
def test_encoder_frames_matches_the_convolutions(n):
    fe = FeatureEncoder(8)
    with torch.no_grad():
        out, frames = fe(torch.randn(1, max(n, 400)) if n >= 400 else torch.randn(1, 400), torch.tensor([n]))
    if n >= 400:
        assert out.shape[2] == encoder_frames(n) == int(frames)
    assert encoder_frames(400) == 1 and encoder_frames(399) == 0 and encoder_frames(16000) == 49
    # closed form for this stack: one frame per 320 samples after the 400-sample receptive field
    assert encoder_frames(n) == (0 if n < 400 else (n - 400) // 320 + 1)


@pytest.mark.parametrize("mode", ["group_norm", "layer_norm", "log_mel"])
def test_padded_batch_equals_unpadded_utterances(mode):
    torch.manual_seed(0)
    extra = {"group_norm": {}, "log_mel": dict(front_end="log_mel", mel_bins=40),
             "layer_norm": dict(extractor_mode="layer_norm", conv_bias=True, normalize_waveform=True,
                                layer_norm_first=True)}[mode]
    bb = Backbone(_micro(**extra)).eval()
    lengths = [16000, 11000, 6321]
    wave = torch.zeros(3, 16000)
    for i, n in enumerate(lengths):
        wave[i, :n] = torch.randn(n)
    wave[1, 11000:] = 5.0  # garbage in the padding must not matter
    with torch.no_grad():
        batch = bb.hidden_states(wave, torch.tensor(lengths))
        for i, n in enumerate(lengths):
            alone = bb.hidden_states(wave[i : i + 1, :n])
            T = alone[0].shape[1]
            assert T == encoder_frames(n)
            for a, b in zip(alone, batch):
                assert (a[0] - b[i, :T]).abs().max() < 1e-5


def test_log_mel_front_end_equals_torchaudio_and_frames_like_the_conv_stack():
    import torchaudio

    torch.manual_seed(0)
    fe = LogMelFrontEnd(80)
    wave = 0.1 * torch.randn(2, 16401)
    feats, frames = fe(wave, torch.tensor([16401, 9000]))
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, hop_length=320, n_mels=80, center=False)
    ref = torch.log(mel(wave) + 1e-6)
    assert feats.shape == ref.shape == (2, 80, encoder_frames(16401))
    assert frames.tolist() == [encoder_frames(16401), encoder_frames(9000)] == [51, 27]
    assert torch.allclose(feats[0], ref[0], atol=1e-5) and torch.allclose(feats[1, :, :27], ref[1, :, :27], atol=1e-5)
    assert float(feats[1, :, 27:].abs().max()) == 0.0  # frames past the length are zero
    with torch.autocast("cpu", dtype=torch.bfloat16):  # computed in fp32 whatever the autocast
        assert fe(wave)[0].dtype == torch.float32
    with torch.device("meta"):  # load_model builds on meta: the window and filters must still be real
        assert not LogMelFrontEnd(80).fbanks.is_meta


def test_log_mel_backbone_has_no_front_end_weights_or_penalty():
    cfg = _micro(front_end="log_mel", mel_bins=40)
    bb = Backbone(cfg)
    assert not any(k.startswith("feature_extractor.") for k in bb.state_dict())  # checkpoints hold weights only
    assert bb.layer_norm.normalized_shape == (40,) and bb.post_extract_proj.in_features == 40
    assert float(bb(torch.randn(1, 8000)).features_pen) == 0.0
    with pytest.raises(S3LError, match="conv_kernels and conv_strides cannot change"):
        _micro(front_end="log_mel", conv_strides=(5, 2, 2, 2, 2, 2, 4))
    with pytest.raises(S3LError, match="front_end must be one of"):
        _micro(front_end="mfcc")


def test_normalize_waveform_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 99.0], [4.0, 4.0, 6.0, 6.0]])
    y = normalize_waveform(x, torch.tensor([3, 4]))
    ref = torch.nn.functional.layer_norm(x[0, :3], (3,))
    assert torch.allclose(y[0, :3], ref, atol=1e-6) and y[0, 3] == 0
    assert torch.allclose(y[1], torch.nn.functional.layer_norm(x[1], (4,)), atol=1e-6)


def test_attention_matches_torch_multihead_attention_with_padding():
    torch.manual_seed(0)
    D, H = 16, 4
    ours = SelfAttention(D, H, dropout=0.0)
    ref = torch.nn.MultiheadAttention(D, H, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(2, 7, D)
    pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    with torch.no_grad():
        got = ours(x, (~pad)[:, None, None, :])
        want, _ = ref(x, x, x, key_padding_mask=pad, need_weights=False)
    assert torch.allclose(got, want, atol=1e-5)


def test_positional_conv_weight_norm_and_same_length():
    pc = PositionalConv(32, 16, 4)
    g = pc.conv.parametrizations.weight.original0
    assert g.shape == (1, 1, 16)  # weight norm over dim 2: one magnitude per kernel tap (fairseq)
    x = torch.randn(2, 9, 32)
    assert pc(x).shape == x.shape
    odd = PositionalConv(32, 15, 4)
    assert odd(x).shape == x.shape


def test_post_ln_and_pre_ln_blocks():
    torch.manual_seed(0)
    for first in (False, True):
        enc = TransformerEncoder(16, 32, 2, 2, conv_pos=4, conv_pos_groups=2, dropout=0.0, attention_dropout=0.0,
                                 layer_norm_first=first).eval()
        x = torch.randn(1, 5, 16)
        with torch.no_grad():
            out, states = enc(x, return_all=True)
        assert len(states) == 3
        normed = torch.nn.functional.layer_norm(states[-1], (16,))
        if first:  # pre-LN: the output is the final LayerNorm of the last block's output
            assert torch.allclose(out, normed, atol=1e-5)
        else:  # post-LN: every block ends with a LayerNorm; the output is the last block's
            assert torch.equal(out, states[-1]) and torch.allclose(states[0], torch.nn.functional.layer_norm(
                states[0], (16,)), atol=1e-5)


def test_layerdrop_skips_whole_blocks_in_training_only():
    enc = TransformerEncoder(16, 32, 3, 2, conv_pos=4, conv_pos_groups=2, dropout=0.0, layerdrop=1.0)
    x = torch.randn(1, 5, 16)
    _, states = enc.train()(x, return_all=True)
    assert len(states) == 1
    _, states = enc.eval()(x, return_all=True)
    assert len(states) == 4


def test_masking_in_the_backbone():
    torch.manual_seed(0)
    bb = Backbone(_micro(mask_prob=0.5, mask_channel_prob=0.25, mask_channel_length=8)).eval()
    wave, lengths = torch.randn(2, 16000), torch.tensor([16000, 9000])
    torch.manual_seed(5)
    a = bb(wave, lengths, mask=True)
    torch.manual_seed(5)
    b = bb(wave, lengths, mask=True)
    assert torch.equal(a.mask_indices, b.mask_indices)  # masks follow torch's RNG (resumable runs)
    m = a.mask_indices
    assert m.sum(1)[0] == m.sum(1)[1] > 0
    assert not m[1, encoder_frames(9000):].any()
    feats = bb.encode(*bb.extract_features(wave, lengths), mask=False)
    assert (a.x - feats.x).abs().max() > 1e-3
    # a masked step's transformer input is the learned mask embedding (channels aside)
    x = bb.post_extract_proj(feats.features)
    torch.manual_seed(5)
    y, mi = bb.apply_mask(x, feats.frame_lengths)
    chan = (y == 0).all(1)  # (B, D) zeroed channels
    sel = mi[0]
    keep = ~chan[0]
    assert torch.equal(y[0, sel][:, keep], bb.mask_emb[keep].expand(int(sel.sum()), -1))
    assert 0 < chan[0].sum() < 64


def test_feature_grad_mult_scales_gradients():
    torch.manual_seed(0)
    cfg = _micro(dropout=0.0, attention_dropout=0.0, dropout_input=0.0)
    full, scaled = Backbone(cfg.replace(feature_grad_mult=1.0)), Backbone(cfg.replace(feature_grad_mult=0.1))
    scaled.load_state_dict(full.state_dict())
    wave = torch.randn(1, 4000)
    for bb in (full, scaled):
        bb(wave).x.sum().backward()
    w = "conv_layers.0.conv.weight"
    g_full = dict(full.feature_extractor.named_parameters())[w].grad
    g_scaled = dict(scaled.feature_extractor.named_parameters())[w].grad
    assert torch.allclose(g_scaled, 0.1 * g_full, rtol=1e-4, atol=1e-7)
    assert torch.allclose(scaled.encoder.layer_norm.weight.grad, full.encoder.layer_norm.weight.grad, atol=1e-6)
    frozen = Backbone(cfg.replace(feature_grad_mult=0.0))
    frozen(wave).x.sum().backward()
    assert all(p.grad is None for p in frozen.feature_extractor.parameters())
