"""``s3l probe``: centre-of-frame phone alignment, the frame sample, the probe itself, the command end to end."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3l.cli import main
from s3l.cluster.features import layer_frames, mfcc_frames
from s3l.manifest import write_split
from s3l.models import build_pretrain_model, preset, save_model
from s3l.probe import (
    centre_phone_index,
    fit_probe,
    frame_phones,
    majority_accuracy,
    sample_frames,
    whitening,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TONES = {"sil": 0.0, "aa": 300.0, "iy": 900.0, "s": 3000.0}  # "phones" MFCCs tell apart easily


# ------------------------------------------------------------------------------------------ alignment


def test_centre_phone_index_hand_worked() -> None:
    # 50 Hz layer frame j: window [320 j, 320 j + 400), centre 320 j + 200 -> phone frame (320 j + 200) // 160
    assert centre_phone_index(4, 320).tolist() == [1, 3, 5, 7]  # 200 // 160, 520 // 160, 840 // 160, 1160 // 160
    # 100 Hz MFCC frame j: window [160 j, 160 j + 400), centre 160 j + 200 -> phone frame j + 1
    assert centre_phone_index(3, 160).tolist() == [1, 2, 3]
    # a centre on a phone-frame boundary belongs to the later frame: window 320, centres 160, 480, 800 -> 1, 3, 5
    assert centre_phone_index(3, 320, window=320).tolist() == [1, 3, 5]
    assert centre_phone_index(3, 320, window=318).tolist() == [0, 2, 4]  # centres 159, 479, 799


def test_frame_phones_picks_the_phone_at_each_frame_centre() -> None:
    phones = ["a", "b", "c", "d", "e", "f"]  # 960 samples = 6 phone frames
    assert layer_frames(960) == 2 and frame_phones(phones, 2, 320).tolist() == ["b", "d"]
    assert mfcc_frames(960) == 4 and frame_phones(phones, 4, 160).tolist() == ["b", "c", "d", "e"]
    assert frame_phones(phones[:3], 2, 320) is None  # phones that do not cover the frames
    assert frame_phones(phones, 0, 320).tolist() == []


@pytest.mark.parametrize("hop,frames", [(320, layer_frames), (160, mfcc_frames)])
def test_centre_index_always_lies_inside_the_phn_line(hop, frames) -> None:
    for n in range(400, 6000, 7):  # every residue of n modulo both hops
        t = frames(n)
        assert t >= 1 and centre_phone_index(t, hop)[-1] < n // 160, n


# ------------------------------------------------------------------------------------------ the frame sample


def test_sample_frames_takes_exactly_max_frames_from_whole_utterances_in_a_seeded_order() -> None:
    counts = [50, 0, 30, 80, 20, 60]
    plan = sample_frames(counts, 100, seed=3)
    assert sum(len(f) for _, f in plan) == 100
    for u, f in plan:
        assert counts[u] > 0 and np.all(np.diff(f) > 0) and f[0] >= 0 and f[-1] < counts[u]
    assert [u for u, _ in plan] == sorted(u for u, _ in plan)
    again = sample_frames(counts, 100, seed=3)
    assert [(u, f.tolist()) for u, f in plan] == [(u, f.tolist()) for u, f in again]
    other = sample_frames(counts, 100, seed=4)
    assert [(u, f.tolist()) for u, f in plan] != [(u, f.tolist()) for u, f in other]
    # only as many utterances as the cap needs: the first ones of the seeded order reach 100 frames
    order = [int(u) for u in np.random.default_rng(3).permutation(len(counts)) if counts[u]]
    need = next(k for k in range(1, len(order) + 1) if sum(counts[u] for u in order[:k]) >= 100)
    assert {u for u, _ in plan} <= set(order[:need])
    everything = sample_frames(counts, 10_000, seed=0)  # below the cap: every frame of every utterance
    assert {u: f.tolist() for u, f in everything} == {u: list(range(c)) for u, c in enumerate(counts) if c}


# ------------------------------------------------------------------------------------------ the probe


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array(["sil", "aa", "iy", "s", "t"]), size=n, p=[0.4, 0.25, 0.15, 0.12, 0.08])


def test_probe_reads_linearly_encoded_phones_perfectly() -> None:
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((5, 24))  # one-hot phone -> 24 correlated dims, plus noise and a constant column
    codes = {p: i for i, p in enumerate(["sil", "aa", "iy", "s", "t"])}

    def feats(y: np.ndarray) -> np.ndarray:
        x = np.eye(5)[[codes[p] for p in y]] @ mix + 0.05 * rng.standard_normal((len(y), 24))
        return np.hstack([x, np.full((len(y), 1), 7.0)]).astype(np.float32)

    y_fit, y_eval = _labels(rng, 4000), _labels(rng, 1000)
    r = fit_probe(feats(y_fit), y_fit, feats(y_eval), y_eval)
    assert r["accuracy"] > 0.995 and r["fit_accuracy"] > 0.995
    assert r["fit_loss"] < 0.05 and r["converged"]  # the L2 penalty bounds the separable fit


def test_probe_on_noise_scores_the_majority_class() -> None:
    rng = np.random.default_rng(1)
    y_fit, y_eval = _labels(rng, 6000), _labels(rng, 3000)
    x_fit, x_eval = (rng.standard_normal((len(y), 16)).astype(np.float32) for y in (y_fit, y_eval))
    r = fit_probe(x_fit, y_fit, x_eval, y_eval)
    chance = majority_accuracy(y_fit, y_eval)
    assert chance == pytest.approx(float((y_eval == "sil").mean()))
    assert abs(r["accuracy"] - chance) < 0.02, (r, chance)
    assert r["accuracy"] < 0.5  # nothing learnable: far from the encoded case


def test_probe_is_deterministic_and_counts_unseen_eval_phones_as_errors() -> None:
    rng = np.random.default_rng(2)
    y_fit = _labels(rng, 2000)
    x_fit = (np.eye(5)[np.unique(y_fit, return_inverse=True)[1]] * 3 + rng.standard_normal((2000, 5)))
    x_fit = x_fit.astype(np.float32)
    y_eval = np.array(["zh"] * 10 + list(y_fit[:10]))  # a phone the fit split never had
    x_eval = np.concatenate([x_fit[:10], x_fit[:10]])
    a = fit_probe(x_fit, y_fit, x_eval, y_eval)
    b = fit_probe(x_fit, y_fit, x_eval, y_eval)
    assert a == b
    assert a["accuracy"] <= 0.5


def test_majority_accuracy_hand_worked() -> None:
    y_fit = np.array(["a", "b", "b", "c", "b", "a"])
    assert majority_accuracy(y_fit, np.array(["b", "a", "b", "c"])) == 0.5
    assert majority_accuracy(np.array(["b", "a"]), np.array(["a", "b", "b"])) == pytest.approx(1 / 3)  # tie: "a"


def test_whitening_gives_identity_covariance_and_drops_collinear_columns() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5000, 3)) @ np.array([[3.0, 1.0, 0.0], [0.0, 0.5, 0.2], [0.0, 0.0, 0.1]])
    x = np.hstack([z, z[:, :1] * 2.0, np.ones((5000, 1))]).astype(np.float32) + 4.0  # a copy and a constant
    mean, t = whitening(x)
    assert t.shape == (5, 3)
    w = (x - mean) @ t
    assert np.allclose(w.mean(0), 0, atol=1e-4) and np.allclose(np.cov(w.T, bias=True), np.eye(3), atol=1e-3)


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """train (6) and dev (4) utterances of tone 'phones' with .phn at 10 ms, and a tiny random checkpoint."""
    root = tmp_path_factory.mktemp("probe")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("dev", 4)):
        rows, phones = [], []
        for u in range(n):
            frames: list[str] = []
            while len(frames) < 90:
                frames += [list(TONES)[rng.integers(len(TONES))]] * int(rng.integers(6, 16))
            size = len(frames) * 160 + int(rng.integers(0, 160))
            freq = np.array([TONES[p] for p in frames])[np.minimum(np.arange(size) // 160, len(frames) - 1)]
            wave = 0.3 * np.sin(2 * np.pi * freq * np.arange(size) / 16000) + 0.01 * rng.standard_normal(size)
            sf.write(root / "audio" / f"{split}{u}.wav", wave.astype(np.float32), 16000)
            rows.append((f"{split}{u}.wav", size))
            phones.append(frames[: size // 160])
        write_split(root, split, root / "audio", rows, phones=phones)
    torch.manual_seed(0)
    cfg = preset("tiny", "contrastive").replace(conv_dim=32, encoder_layers=2, encoder_embed_dim=32,
                                                encoder_ffn_embed_dim=64, encoder_attention_heads=2, conv_pos=16,
                                                conv_pos_groups=4, final_dim=16, latent_vars=8)
    ckpt = root / "tiny.safetensors"
    save_model(ckpt, build_pretrain_model(cfg))
    return root, ckpt


def run(capsys: pytest.CaptureFixture[str], argv: list) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    cap = capsys.readouterr()
    return e.value.code, ANSI.sub("", cap.out), ANSI.sub("", cap.err)


def base(root: Path, out: Path) -> list:
    return ["probe", "--data", root, "--fit-split", "train", "--eval-split", "dev", "--out", out, "--device", "cpu",
            "--threads", "1", "--batch-seconds", "2"]


KEYS = {"feature", "checkpoint", "random_init", "layers", "best_layer", "best_accuracy", "majority_accuracy",
        "fit_split", "eval_split", "frames", "seconds"}


def test_cli_probes_every_layer_of_a_checkpoint(corpus, tmp_path, capsys) -> None:
    root, ckpt = corpus
    status, out, err = run(capsys, [*base(root, tmp_path / "rep"), "--checkpoint", ckpt])
    assert status == 0, err
    rep = json.loads((tmp_path / "rep" / "probe.json").read_text())
    assert KEYS <= set(rep) and rep["feature"] == "layer" and rep["checkpoint"] == str(ckpt)
    assert [r["layer"] for r in rep["layers"]] == [0, 1, 2]  # transformer input + 2 blocks
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rep["layers"])
    best = max(rep["layers"], key=lambda r: r["accuracy"])
    assert (rep["best_layer"], rep["best_accuracy"]) == (best["layer"], best["accuracy"])
    sizes = [int(line.split("\t")[1]) for line in (root / "dev.tsv").read_text().splitlines()[1:]]
    assert rep["frames"]["rate"] == 50 and rep["frames"]["eval"] == sum(layer_frames(n) for n in sizes)
    assert rep["frames"]["eval_utterances"] == 4 and rep["frames"]["fit_utterances"] == 6
    assert (tmp_path / "rep" / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "linear phone probe" in out and "majority class" in out

    status, _, err = run(capsys, [*base(root, tmp_path / "rep"), "--checkpoint", ckpt])  # no --force
    assert status == 2 and "already exists; pass --force" in err


def test_cli_mfcc_reads_tones_far_above_chance_and_caps_frames(corpus, tmp_path, capsys) -> None:
    root, _ = corpus
    status, _, err = run(capsys, [*base(root, tmp_path), "--feature", "mfcc", "--max-frames", "300", "--seed", "1"])
    assert status == 0, err
    rep = json.loads((tmp_path / "probe.json").read_text())
    assert [r["layer"] for r in rep["layers"]] == [0] and rep["frames"]["rate"] == 100
    assert rep["frames"]["fit"] == 300 and rep["frames"]["eval"] == 300
    assert rep["frames"]["fit_split_frames"] > 300
    # four tones, distinct in every MFCC frame but the boundaries: a probe on misaligned labels would not get here
    assert rep["best_accuracy"] > rep["majority_accuracy"] + 0.4


def test_cli_random_init_selected_layers(corpus, tmp_path, capsys) -> None:
    root, _ = corpus
    status, _, err = run(capsys, [*base(root, tmp_path), "--random-init", "tiny", "--layers", "4,0"])
    assert status == 0, err
    rep = json.loads((tmp_path / "probe.json").read_text())
    assert rep["random_init"] == "tiny" and rep["checkpoint"] is None
    assert [r["layer"] for r in rep["layers"]] == [0, 4]


def one_line_error(status: int, err: str, *words: str) -> None:
    assert status == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_cli_user_errors_are_one_line(corpus, tmp_path, capsys) -> None:
    root, ckpt = corpus
    out = tmp_path / "rep"
    status, _, err = run(capsys, [*base(root, out), "--feature", "mfcc", "--checkpoint", ckpt])
    one_line_error(status, err, "exactly one of", "--feature and --checkpoint")
    status, _, err = run(capsys, base(root, out))
    one_line_error(status, err, "exactly one of")
    status, _, err = run(capsys, [*base(root, out), "--feature", "layer"])
    one_line_error(status, err, "--feature 'layer'")
    status, _, err = run(capsys, [*base(root, out), "--feature", "mfcc", "--layers", "1"])
    one_line_error(status, err, "--layers")
    status, _, err = run(capsys, [*base(root, out), "--checkpoint", ckpt, "--layers", "0,3"])
    one_line_error(status, err, "--layers 3 out of range", "layers 0..2")
    status, _, err = run(capsys, [*base(root, out), "--checkpoint", ckpt, "--layers", "x"])
    one_line_error(status, err, "--layers 'x'")
    status, _, err = run(capsys, [*base(root, out), "--random-init", "huge"])
    one_line_error(status, err, "unknown model preset 'huge'")

    data = tmp_path / "data"
    shutil.copytree(root, data, ignore=shutil.ignore_patterns("audio", "*.safetensors"))
    lines = (data / "dev.phn").read_text().splitlines()
    (data / "dev.phn").write_text("\n".join(lines[:-1]) + "\n")  # a line short
    status, _, err = run(capsys, [*base(data, out), "--feature", "mfcc"])
    one_line_error(status, err, str(data / "dev.phn"), "3 lines", "4 utterances")
    (data / "dev.phn").write_text("\n".join([*lines[:2], lines[2] + " sil", lines[3]]) + "\n")  # a frame too many
    status, _, err = run(capsys, [*base(data, out), "--feature", "mfcc"])
    one_line_error(status, err, f"{data / 'dev.phn'}:3:", "phone frames, expected")
    (data / "dev.phn").unlink()
    status, _, err = run(capsys, [*base(data, out), "--feature", "mfcc"])
    one_line_error(status, err, str(data / "dev.phn"), "not found")
    assert not out.exists()  # nothing written, no empty directory left
