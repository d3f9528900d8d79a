"""Pre-training objectives: Gumbel quantizer, distractor sampling, contrastive and HuBERT losses."""

import math

import numpy as np
import pytest
import torch

from s3l.errors import S3LError
from s3l.models import build_pretrain_model, preset
from s3l.models.hubert import align_labels, label_logits
from s3l.models.quantizer import GumbelVectorQuantizer, diversity_loss, gumbel_softmax_st
from s3l.models.wav2vec2 import contrastive_accuracy, contrastive_logits, sample_negatives


def _micro(objective="contrastive", **kw):
    base = dict(conv_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=32, latent_vars=16)
    base.update(kw)
    return preset("tiny", objective).replace(**base)


# ---------------------------------------------------------------------------------------------- quantizer


def test_gumbel_straight_through_is_hard_forward_soft_backward():
    logits = torch.randn(6, 2, 9, requires_grad=True)
    w = torch.randn(6, 2, 9)
    torch.manual_seed(3)
    out = gumbel_softmax_st(logits, tau=0.7)
    (out * w).sum().backward()
    assert torch.allclose(out, torch.nn.functional.one_hot(out.argmax(-1), 9).float(), atol=1e-6)

    ref_logits = logits.detach().clone().requires_grad_(True)
    torch.manual_seed(3)
    gumbels = -torch.empty_like(ref_logits).exponential_().log()
    soft = ((ref_logits + gumbels) / 0.7).softmax(-1)
    (soft * w).sum().backward()
    assert torch.equal(out.argmax(-1), soft.argmax(-1))  # the hard choice is the noisy argmax
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-6)  # gradient of the soft sample


def test_temperature_schedule():
    q = GumbelVectorQuantizer(8, 4, 2, 8, (2.0, 0.5, 0.999995))
    assert q.temperature_at(0) == 2.0
    assert q.temperature_at(100_000) == pytest.approx(2.0 * 0.999995**100_000)  # 1.2131
    assert q.temperature_at(100_000) == pytest.approx(1.21306, abs=1e-4)
    assert q.temperature_at(300_000) == 0.5  # floor reached after ln(0.25)/ln(0.999995) = 277,258 updates
    large = GumbelVectorQuantizer(8, 4, 2, 8, (2.0, 0.1, 0.999995))
    assert large.temperature_at(300_000) == pytest.approx(2.0 * math.exp(300_000 * math.log(0.999995)))
    assert large.temperature_at(1_000_000) == 0.1
    model = build_pretrain_model(_micro())
    model.set_num_updates(100_000)
    assert model.quantizer.curr_temp == pytest.approx(1.21306, abs=1e-4)


def test_quantizer_output_and_perplexities():
    torch.manual_seed(0)
    q = GumbelVectorQuantizer(8, 5, 2, 6, (2.0, 0.5, 0.999995)).eval()
    x = torch.randn(3, 4, 8)
    out = q(x)
    assert out.x.shape == (3, 4, 6) and out.codes.shape == (3, 4, 2) and out.x.dtype == torch.float32
    books = q.vars.view(2, 5, 3)
    logits = q.weight_proj(x).detach().view(3, 4, 2, 5)
    codes = logits.argmax(-1)
    assert torch.equal(out.codes, codes)
    assert torch.allclose(out.x, torch.cat([books[0][codes[..., 0]], books[1][codes[..., 1]]], -1))
    # perplexity of the batch-averaged softmax, summed over the codebooks
    avg = logits.softmax(-1).reshape(-1, 2, 5).mean(0)
    want = float(torch.exp(-(avg * avg.log()).sum(-1)).sum())
    assert float(out.prob_perplexity.detach()) == pytest.approx(want, rel=1e-4)
    hard = torch.nn.functional.one_hot(codes, 5).float().reshape(-1, 2, 5).mean(0)
    ent = -(hard * torch.log(hard + 1e-7)).sum(-1)
    assert out.code_perplexity.item() == pytest.approx(float(torch.exp(ent).sum()), rel=1e-5)


def test_diversity_loss_zero_when_uniform_and_maximal_when_collapsed():
    G, V = 2, 320
    q = GumbelVectorQuantizer(8, V, G, 16, (2.0, 0.5, 0.999995))
    x = torch.randn(50, 8)
    with torch.no_grad():
        q.weight_proj.weight.zero_()
        q.weight_proj.bias.zero_()
    uniform = q(x)
    assert uniform.prob_perplexity.item() == pytest.approx(G * V, rel=1e-4)
    assert diversity_loss(uniform.prob_perplexity, G * V).item() == pytest.approx(0.0, abs=1e-4)
    with torch.no_grad():
        q.weight_proj.bias.view(G, V)[:, 7] = 100.0  # every frame picks entry 7 of each codebook
    collapsed = q(x)
    assert collapsed.prob_perplexity.item() == pytest.approx(G, rel=1e-4)
    assert diversity_loss(collapsed.prob_perplexity, G * V).item() == pytest.approx((G * V - G) / (G * V), rel=1e-4)
    assert collapsed.code_perplexity.item() == pytest.approx(G, rel=1e-4)


# ---------------------------------------------------------------------------------------------- contrastive


def test_negatives_never_the_positive_and_uniform_over_the_others():
    torch.manual_seed(0)
    B, N, K = 3, 7, 2000
    idx = sample_negatives(B, N, K)
    assert idx.shape == (B, N, K)
    t = torch.arange(N).view(1, N, 1)
    assert not (idx == t).any()
    assert idx.min() >= 0 and idx.max() < N
    counts = torch.stack([(idx == j).float().mean(-1) for j in range(N)], -1)  # (B, N, N) frequencies
    off = counts[:, ~torch.eye(N, dtype=torch.bool)]
    assert (off - 1 / (N - 1)).abs().max() < 0.05


def test_contrastive_logits_hand_computed():
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, 3, 2) predictions
    y = torch.tensor([[[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])  # (1, 3, 2) targets
    neg = torch.tensor([[[1, 2], [0, 2], [0, 1]]])  # distractor indices (never t)
    same = torch.zeros(1, 3, 3, dtype=torch.bool)
    same[0, 2, 1] = True  # pretend target 1 equals target 2: excluded for t = 2
    logits = contrastive_logits(x, y, neg, same, 0.1)
    r = 1 / math.sqrt(2)
    cos = [[1.0, r, 0.0], [0.0, r, 1.0], [r, 1.0, r]]  # cos(x_t, y_j)
    expected = [[cos[0][0], cos[0][1], cos[0][2]], [cos[1][1], cos[1][0], cos[1][2]], [cos[2][2], cos[2][0], None]]
    for t in range(3):
        for c in range(3):
            if expected[t][c] is None:
                assert logits[0, t, c] == float("-inf")
            else:
                assert logits[0, t, c].item() == pytest.approx(expected[t][c] / 0.1, abs=1e-5)
    loss = torch.nn.functional.cross_entropy(logits.view(3, 3), torch.zeros(3, dtype=torch.long))

    def ce(row):
        row = [v / 0.1 for v in row if v is not None]
        return math.log(sum(math.exp(v) for v in row)) - row[0]

    assert loss.item() == pytest.approx(sum(ce(r) for r in expected) / 3, abs=1e-5)
    correct, count = contrastive_accuracy(logits)
    # t=0 is right, t=1 prefers a distractor, t=2 ties with its remaining distractor: argmax picks the positive
    # (first index) and, as in fairseq, a tie counts unless every logit is equal.
    assert (correct, count) == (2, 3)


def test_contrastive_logits_stay_within_each_utterance():
    torch.manual_seed(0)
    x, y = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    neg = sample_negatives(2, 5, 3)
    logits = contrastive_logits(x, y, neg, None, 0.1)
    cos = torch.nn.functional.cosine_similarity
    for b in range(2):
        for t in range(5):
            assert logits[b, t, 0] == pytest.approx(cos(x[b, t], y[b, t], dim=0).item() / 0.1, abs=1e-5)
            for k in range(3):
                j = neg[b, t, k]
                assert logits[b, t, 1 + k] == pytest.approx(cos(x[b, t], y[b, j], dim=0).item() / 0.1, abs=1e-5)


def test_contrastive_model_loss_terms_and_identical_distractors():
    torch.manual_seed(0)
    model = build_pretrain_model(_micro(num_negatives=10, feature_pen_weight=10.0)).train()  # BASE's weights
    wave, lengths = torch.randn(2, 8000), torch.tensor([8000, 7000])
    out = model(wave, lengths)
    lg = out.logs
    assert out.loss.item() == pytest.approx(
        lg["contrastive_loss"] + 0.1 * lg["diversity_loss"] + 10.0 * lg["features_pen"], rel=1e-5)
    assert lg["temperature"] == 2.0 and 0 < lg["code_perplexity"] <= 2 * 16
    out.loss.backward()
    assert model.quantizer.weight_proj.weight.grad.abs().sum() > 0  # gradient reaches the quantizer
    assert model.backbone.feature_extractor.conv_layers[0].conv.weight.grad.abs().sum() > 0

    # A collapsed quantizer makes every distractor identical to its positive: all are excluded from the softmax,
    # so the contrastive loss is exactly 0 and the diversity loss is maximal.
    with torch.no_grad():
        model.quantizer.weight_proj.weight.zero_()
        model.quantizer.weight_proj.bias.view(2, 16)[:, 3] = 1e4
    lg = model(wave, lengths).logs
    assert lg["contrastive_loss"] == 0.0
    assert lg["diversity_loss"] == pytest.approx((32 - 2) / 32, rel=1e-4)


def test_contrastive_needs_masked_frames():
    model = build_pretrain_model(_micro().replace(mask_prob=0.0))
    with pytest.raises(S3LError, match="mask_prob"):
        model(torch.randn(1, 4000))


# ---------------------------------------------------------------------------------------------- HuBERT


def test_label_rate_mapping_100hz_and_50hz():
    feats = torch.zeros(2, 3, 99)  # 2 s of audio -> 99 frames
    frames = torch.tensor([99, 80])
    lab100 = torch.arange(200).repeat(2, 1)
    lab50 = torch.arange(100).repeat(2, 1)
    f, n, (a100, a50) = align_labels(feats, frames, [lab100, lab50], [2.0, 1.0])
    assert f.shape[2] == 99 and n.tolist() == [99, 80]
    assert a100[0].tolist() == list(range(0, 198, 2))  # frame t <- label 2t
    assert a50[0].tolist() == list(range(99))  # frame t <- label t
    # labels shorter than the frames: the features are cut to int(len / ratio)
    f, n, (short,) = align_labels(feats, frames, [torch.arange(190).repeat(2, 1)], [2.0])
    assert f.shape[2] == 95 and n.tolist() == [95, 80] and short[0, -1].item() == 188
    f, _, _ = align_labels(feats, frames, [torch.arange(97).repeat(2, 1)], [1.0])
    assert f.shape[2] == 97


def test_label_logits_hand_computed():
    proj = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    embs = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    got = label_logits(proj, embs, 0.1)
    r = 1 / math.sqrt(2)
    assert torch.allclose(got, torch.tensor([[1.0, 0.0, -1.0], [r, r, -r]]) / 0.1, atol=1e-5)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_hubert_loss_and_accuracy_against_direct_computation(alpha):
    torch.manual_seed(0)
    cfg = _micro("hubert", label_rates=(100.0, 50.0), masked_weight=alpha)
    model = build_pretrain_model(cfg, num_classes=[7, 5]).eval()  # eval: no dropout; masking still applies
    wave, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    targets = [torch.randint(0, 7, (2, 100)), torch.randint(0, 5, (2, 50))]
    targets[0][1, 75:] = -1  # padding labels
    targets[1][1, 37:] = -1
    torch.manual_seed(11)
    out = model(wave, lengths, targets)

    torch.manual_seed(11)  # the same mask
    feats, frames = model.backbone.extract_features(wave, lengths)
    T = feats.shape[2]  # 49 frames; labels at 100 Hz give 100 >= 2 * 49, at 50 Hz 50 >= 49
    enc = model.backbone.encode(feats, frames, mask=True)
    x = enc.x.detach().numpy()
    mask = enc.mask_indices.numpy()
    W, bias = model.final_proj.weight.detach().numpy(), model.final_proj.bias.detach().numpy()
    embs = model.label_embs_concat.detach().numpy()
    sets = [(embs[:7], targets[0].numpy()[:, ::2][:, :T], 0), (embs[7:], targets[1].numpy()[:, :T], 1)]
    sums = {"masked": 0.0, "unmasked": 0.0}
    counts = {"masked": 0, "unmasked": 0}
    correct = {}
    for b in range(2):
        for t in range(int(frames[b])):
            labs = [s[1][b, t] for s in sets]
            if min(labs) < 0:
                continue
            part = "masked" if mask[b, t] else "unmasked"
            counts[part] += 1
            proj = W @ x[b, t] + bias
            for e, lab, i in sets:
                p = proj[i * 32:(i + 1) * 32]
                cos = e @ p / (np.linalg.norm(e, axis=1) * np.linalg.norm(p)) / 0.1
                sums[part] += math.log(np.exp(cos).sum()) - cos[lab[b, t]]
                correct[(part, i)] = correct.get((part, i), 0) + int(np.argmax(cos) == lab[b, t])
    sample_size = counts["masked"] + (counts["unmasked"] if alpha < 1 else 0)
    expected = (alpha * sums["masked"] + (1 - alpha) * sums["unmasked"]) / sample_size
    expected += 10.0 * out.logs["features_pen"]
    assert out.loss.item() == pytest.approx(expected, rel=1e-4)
    assert out.logs["frames_masked"] == counts["masked"] and out.logs["frames_unmasked"] == counts["unmasked"]
    assert out.logs["acc_masked_1"] == pytest.approx(correct[("masked", 1)] / counts["masked"])
    assert out.logs["acc_unmasked_0"] == pytest.approx(correct[("unmasked", 0)] / counts["unmasked"])


def test_hubert_errors():
    with pytest.raises(S3LError, match="number of units"):
        build_pretrain_model(_micro("hubert"))
    with pytest.raises(S3LError, match="label rate"):
        build_pretrain_model(_micro("hubert"), num_classes=[5, 5])
    model = build_pretrain_model(_micro("hubert"), num_classes=[5])
    with pytest.raises(S3LError, match="out of range"):
        model(torch.randn(1, 8000), targets=[torch.full((1, 25), 5)])
    with pytest.raises(S3LError, match="label tensor"):
        model(torch.randn(1, 8000))
