"""analyze-units --layers and --codes on tiny random checkpoints, checked against direct model computations."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from s3l.analysis.align import JointCounter, RateAlignment, align_pair
from s3l.analysis.codes import perplexity
from s3l.analysis.metrics import unit_quality
from s3l.analysis.run import AnalyzeConfig
from s3l.analysis.sweep import AllLayersExtractor, extract, score_layers
from s3l.cli import app
from s3l.errors import S3LError
from s3l.manifest import write_split
from s3l.models import build_pretrain_model, load_model, preset, save_model

TONES = {"sil": 0.0, "aa": 300.0, "iy": 900.0, "s": 3000.0}


def _small(objective: str):
    return preset("tiny", objective).replace(conv_dim=32, encoder_layers=2, encoder_embed_dim=32,
                                             encoder_ffn_embed_dim=64, encoder_attention_heads=2, conv_pos=16,
                                             conv_pos_groups=4, final_dim=16, latent_vars=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Six utterances of tone 'phones' (10 ms frames), a contrastive and a HuBERT tiny random checkpoint."""
    root = tmp_path_factory.mktemp("an")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    rows, phones = [], []
    for u in range(6):
        frames = []
        while len(frames) < 80:
            frames += [list(TONES)[rng.integers(len(TONES))]] * int(rng.integers(5, 15))
        size = len(frames) * 160 + int(rng.integers(0, 160))
        t = np.arange(size) / 16000
        freq = np.array([TONES[p] for p in frames] + [TONES[frames[-1]]])[np.minimum(np.arange(size) // 160,
                                                                                       len(frames))]
        wave = 0.3 * np.sin(2 * np.pi * freq * t) * (freq > 0) + 0.01 * rng.standard_normal(size)
        sf.write(root / "audio" / f"u{u}.wav", wave.astype(np.float32), 16000)
        rows.append((f"u{u}.wav", size))
        phones.append(frames[: size // 160])
    write_split(root, "dev", root / "audio", rows, phones=phones)
    torch.manual_seed(0)
    w2v = root / "w2v.safetensors"
    save_model(w2v, build_pretrain_model(_small("contrastive")))
    hub = root / "hubert.safetensors"
    save_model(hub, build_pretrain_model(_small("hubert"), num_classes=[10]))
    return root, w2v, hub


def _phone_lines(root: Path) -> list[list[str]]:
    return [line.split() for line in (root / "dev.phn").read_text().splitlines()]


def _waves(root: Path) -> list[np.ndarray]:
    lines = (root / "dev.tsv").read_text().splitlines()
    return [sf.read(Path(lines[0]) / line.split("\t")[0], dtype="float32")[0] for line in lines[1:]]


def test_score_layers_matches_direct_hidden_states(corpus, tmp_path):
    root, w2v, _ = corpus
    from s3l.manifest import load_split

    manifest = load_split(root, "dev").manifest
    ex = AllLayersExtractor(w2v, "cpu", batch_seconds=2.0)
    assert (ex.num_states, ex.layer_dim) == (3, 32)
    store = extract(manifest, list(range(len(manifest))), ex, tmp_path, "dev")
    rng = np.random.default_rng(1)
    centroids = {(layer, 4): rng.standard_normal((4, 32)).astype(np.float32) for layer in range(3)}
    rates = RateAlignment(unit_rate=50, phone_rate=100)
    cfg = AnalyzeConfig(out=tmp_path)
    rows = score_layers(store, manifest, _phone_lines(root), centroids, 32, rates, cfg)
    # independent: hidden states of each whole utterance, nearest centroid by brute force in float64
    model = load_model(w2v)
    phones = _phone_lines(root)
    for layer in range(3):
        counter = JointCounter()
        c = torch.from_numpy(centroids[(layer, 4)]).double()
        for wave, ph in zip(_waves(root), phones):
            with torch.no_grad():
                h = model.hidden_states(torch.from_numpy(wave)[None])[layer][0].double()  # (T, D)
            labels = torch.cdist(h, c).argmin(1).numpy()
            counter.add(*align_pair(labels, np.asarray(ph), rates))
        want = unit_quality(counter.counts)
        got = next(r for r in rows if r["layer"] == layer)
        assert got["pnmi"] == pytest.approx(want.pnmi, abs=1e-9)
        assert got["phone_purity"] == pytest.approx(want.phone_purity, abs=1e-12)
        assert got["frames"] == want.frames


def _png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_cli_layer_sweep(corpus, tmp_path):
    root, _, hub = corpus
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["analyze-units", "--layers", "--checkpoint", str(hub), "--data", str(root),
                                   "--split", "dev", "--k", "3,5", "--batch-seconds", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "layers.json").read_text())
    assert report["layers"] == 3 and report["ks"] == [3, 5]
    assert sorted((r["layer"], r["k"]) for r in report["rows"]) == [(ly, k) for ly in range(3) for k in (3, 5)]
    for r in report["rows"]:
        assert 0 <= r["pnmi"] <= 1 and 0 < r["phone_purity"] <= 1 and 1 <= r["used_units"] <= r["k"]
        assert r["inertia"] >= 0
    assert _png(out / "layers.png")[0] > 800
    assert not list(out.glob(".layer-features-*"))  # spilled features are removed


def test_cli_codes(corpus, tmp_path):
    root, w2v, _ = corpus
    out = tmp_path / "rep"
    res = CliRunner().invoke(app, ["analyze-units", "--codes", "--checkpoint", str(w2v), "--data", str(root),
                                   "--split", "dev", "--top-codes", "10", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "codes.json").read_text())
    # independent: quantizer logits from the weights, argmax per codebook (eval mode: no Gumbel noise)
    model = load_model(w2v)
    q = model.quantizer
    per_book = np.zeros((2, 8), dtype=np.int64)
    product = JointCounter()
    rates = RateAlignment(unit_rate=50, phone_rate=100)
    for wave, ph in zip(_waves(root), _phone_lines(root)):
        with torch.no_grad():
            feats = model.backbone(torch.from_numpy(wave)[None]).features[0]  # (T, C)
            logits = F.linear(feats, q.weight_proj.weight, q.weight_proj.bias).view(-1, 2, 8)
        codes = logits.argmax(-1).numpy()  # (T, 2)
        for g in range(2):
            per_book[g] += np.bincount(codes[:, g], minlength=8)
        product.add(*align_pair(codes[:, 0] * 8 + codes[:, 1], np.asarray(ph), rates))
    assert [c["used"] for c in rep["codebooks"]] == [int((per_book[g] > 0).sum()) for g in range(2)]
    for g in range(2):
        assert rep["codebooks"][g]["perplexity"] == pytest.approx(perplexity(per_book[g]), rel=1e-9)
    want = unit_quality(product.counts)
    assert rep["product"]["used"] == want.used_units and rep["product"]["possible"] == 64
    assert rep["product"]["pnmi"] == pytest.approx(want.pnmi, abs=1e-9)
    assert rep["code_perplexity"] == pytest.approx(sum(perplexity(per_book[g]) for g in range(2)))
    assert rep["heatmap_codes"] == min(10, want.used_units)
    assert _png(out / "phone_given_code.png")[0] > 500 and _png(out / "code_usage.png")[1] > 300


def test_perplexity_hand_worked():
    assert perplexity(np.array([5, 5, 5, 5, 0])) == pytest.approx(4.0)  # four equally used codes
    assert perplexity(np.array([7, 0, 0])) == pytest.approx(1.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 bits -> 2^1.5
    assert perplexity(np.array([2, 1, 1])) == pytest.approx(2**1.5)


def test_codes_needs_contrastive_checkpoint(corpus, tmp_path):
    root, _, hub = corpus
    res = CliRunner().invoke(app, ["analyze-units", "--codes", "--checkpoint", str(hub), "--data", str(root),
                                   "--split", "dev", "--out", str(tmp_path)])
    assert isinstance(res.exception, S3LError) and "contrastive" in str(res.exception)


def test_model_modes_need_inputs(corpus, tmp_path):
    root, w2v, _ = corpus
    res = CliRunner().invoke(app, ["analyze-units", "--layers", "--checkpoint", str(w2v), "--out", str(tmp_path)])
    assert isinstance(res.exception, S3LError) and "--data" in str(res.exception)
    res = CliRunner().invoke(app, ["analyze-units", "--layers", "--checkpoint", str(tmp_path / "none.safetensors"),
                                   "--data", str(root), "--split", "dev", "--out", str(tmp_path)])
    assert isinstance(res.exception, S3LError) and "not found" in str(res.exception)
