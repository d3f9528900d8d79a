"""Learning sanity checks and mixed precision for the pre-training models."""

import pytest
import torch

from s3l.models import build_pretrain_model, preset


def _micro(objective="contrastive", **kw):
    base = dict(conv_dim=32, encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128,
                encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4, final_dim=32, latent_vars=16,
                num_negatives=20)
    base.update(kw)
    return preset("tiny", objective).replace(**base)


def _wave(seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(16000) / 16000
    # a structured signal (changing tones plus noise) so that masked frames are predictable from context
    f = 200 + 300 * (torch.arange(16000) // 2000 % 4)
    clean = torch.sin(2 * torch.pi * f * t)
    return torch.stack([clean + 0.1 * torch.randn(16000, generator=g), clean.roll(3000)]), torch.tensor([16000, 14000])


@pytest.mark.parametrize("objective", ["contrastive", "hubert"])
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(objective):
    torch.manual_seed(0)
    num_classes = [6] if objective == "hubert" else None
    model = build_pretrain_model(_micro(objective), num_classes=num_classes).train()
    wave, lengths = _wave()
    # units that follow the tone (one per 2000 samples = 12.5 labels at 100 Hz), as k-means on MFCCs would give
    targets = [(torch.arange(100) // 12.5 % 4).long().repeat(2, 1)] if objective == "hubert" else None
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    # The objective's own term and accuracy, not the total: the feature penalty alone (x 10) falls fast enough to
    # halve the total while the prediction task learns nothing.
    key, acc_key = ("contrastive_loss", "accuracy") if objective == "contrastive" else ("loss_masked", "acc_masked")
    logs = []
    for _ in range(12):
        torch.manual_seed(1)  # the same masks, distractors and dropout at every step
        out = model(wave, lengths, targets)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        logs.append(out.logs)
    assert logs[-1][key] < 0.5 * logs[0][key], [lg[key] for lg in logs]
    assert logs[-1][acc_key] > 0.5 > logs[0][acc_key], [lg[acc_key] for lg in logs]


@pytest.mark.parametrize("objective", ["contrastive", "hubert"])
def test_runs_under_bf16_autocast(objective):
    torch.manual_seed(0)
    num_classes = [6] if objective == "hubert" else None
    model = build_pretrain_model(_micro(objective), num_classes=num_classes).train()
    wave, lengths = _wave()
    targets = [torch.randint(0, 6, (2, 100))] if objective == "hubert" else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(wave, lengths, targets)
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if objective == "contrastive":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q = model.quantizer(torch.randn(3, 32, dtype=torch.bfloat16))
        assert q.x.dtype == torch.float32 and q.prob_perplexity.dtype == torch.float32
