"""CTC decoding: greedy and KenLM beam search on hand-built emissions, tuning, stored emissions, the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from s3l.cli import app
from s3l.decode.ctc import greedy, lm_unigrams, pyctcdecode_labels
from s3l.decode.decoder import SearchOptions, make_decoder
from s3l.decode.emissions import Emissions, emissions_path, load_emissions, save_emissions
from s3l.decode.tune import Trial, best, search
from s3l.errors import S3LError
from s3l.lm import FALLBACK_DISCOUNTS, estimate, write_arpa
from s3l.manifest import normalize_transcript, write_split

VOCAB = ["<blank>", "|", *"ETAOHNSRDLCMGW"]
LM_TEXT = [
    "THE CAT SAT ON THE MAT", "THE CAT SAT", "A CAT SAT ON A MAT", "THE DOG SAT ON THE MAT", "THE CAT RAN",
    "HE HAD A HAT", "A RED HAT", "SHE HAD A RED HAT", "THE DOG RAN", "THE CAT HAD A HAT",
]


def emission(text: str, confusions: dict[int, dict[str, float]] | None = None) -> np.ndarray:
    """(T, V) log-probs: each letter (and the | after each word) on one frame at p 0.9, then a blank frame.

    ``confusions[k]`` replaces the distribution of the k-th symbol frame (0-based, | included).
    """
    symbols = [c for w in text.split() for c in (*w, "|")]
    frames = []
    for k, s in enumerate(symbols):
        probs = (confusions or {}).get(k, {s: 0.9})
        row = np.full(len(VOCAB), (1.0 - sum(probs.values())) / (len(VOCAB) - len(probs)))
        for sym, p in probs.items():
            row[VOCAB.index(sym)] = p
        blank = np.full(len(VOCAB), 0.1 / (len(VOCAB) - 1))
        blank[0] = 0.9
        frames += [row, blank]
    return np.log(np.stack(frames)).astype(np.float32)


# "THE CAT SAT": symbol 4 is the C; the model slightly prefers H there ("THE HAT SAT" is acoustically better).
C_OR_H = {4: {"H": 0.5, "C": 0.4}}


@pytest.fixture(scope="module")
def arpa(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "lm.arpa"
    write_arpa(estimate([s.split() for s in LM_TEXT], 3, FALLBACK_DISCOUNTS), path)
    return path


def test_greedy_collapses_repeats_and_drops_blanks():
    idx = {s: i for i, s in enumerate(VOCAB)}
    # frames: T T H <b> E | | <b> A <b> A L L | -> "THE AAL"
    path = ["T", "T", "H", "<blank>", "E", "|", "|", "<blank>", "A", "<blank>", "A", "L", "L", "|"]
    em = np.full((len(path), len(VOCAB)), -5.0, dtype=np.float32)
    for t, s in enumerate(path):
        em[t, idx[s]] = -0.1
    assert greedy(em, VOCAB) == "THE AAL"
    assert greedy(emission("THE CAT SAT", C_OR_H), VOCAB) == "THE HAT SAT"
    assert greedy(np.zeros((0, len(VOCAB))), VOCAB) == ""
    assert pyctcdecode_labels(VOCAB)[:3] == ["", " ", "E"]


def test_lm_beam_search_fixes_greedy_error(arpa):
    em = emission("THE CAT SAT", C_OR_H)
    words = lm_unigrams(arpa)
    assert set(words) == set(" ".join(LM_TEXT).split())
    with_lm = make_decoder("beam", VOCAB, SearchOptions(beam=20, lm_weight=2.0, word_score=0.0), lm=arpa)
    assert with_lm.decode(em).text == "THE CAT SAT"
    assert with_lm.decode(emission("A RED HAT")).text == "A RED HAT"  # clean input stays as it is
    no_lm = make_decoder("beam", VOCAB, SearchOptions(beam=20))
    assert no_lm.decode(em).text == "THE HAT SAT"  # the beam alone agrees with greedy: the LM made the difference
    with_lm.set_weights(0.0, 0.0)
    assert with_lm.decode(em).text == "THE HAT SAT"


def test_hypothesis_ending_with_word_boundary_is_not_penalised(arpa):
    # After the final | the model is unsure whether an "A" follows (p 0.3 against blank 0.6).
    tail = np.full((1, len(VOCAB)), 0.1 / (len(VOCAB) - 2))
    tail[0, 0], tail[0, VOCAB.index("A")] = 0.6, 0.3
    em = np.concatenate([emission("THE CAT SAT"), np.log(tail).astype(np.float32)])
    dec = make_decoder("beam", VOCAB, SearchOptions(beam=20, lm_weight=2.0, word_score=0.0), lm=arpa)
    assert dec.decode(em).text == "THE CAT SAT"
    # Stock pyctcdecode scores the empty last word of "THE CAT SAT |" as an unknown word, so it appends the A.
    from pyctcdecode import Alphabet, BeamSearchDecoderCTC, LanguageModel

    from s3l.lm import load_kenlm

    stock = BeamSearchDecoderCTC(Alphabet.build_alphabet(pyctcdecode_labels(VOCAB)),
                                 LanguageModel(load_kenlm(arpa), lm_unigrams(arpa), alpha=2.0, beta=0.0))
    assert stock.decode(em, beam_width=20) == "THE CAT SAT A"


def test_search_finds_minimum_within_budget():
    target = (2.2, 1.1)  # off the coarse grid

    def evaluate(a: float, b: float) -> tuple[int, int]:  # piecewise constant bowl, like a dev WER
        return int(10 * (abs(a - target[0]) + abs(b - target[1]) / 2)), 100

    trials = search(evaluate, 40)
    assert len(trials) <= 40 and len({(t.lm_weight, t.word_score) for t in trials}) == len(trials)
    assert all(0 <= t.lm_weight <= 5 and -5 <= t.word_score <= 5 for t in trials)
    assert trials[0].stage == "grid" and trials[-1].stage == "refine"
    b = best(trials)
    assert abs(b.lm_weight - 2.2) <= 0.2 and abs(b.word_score - 1.1) <= 0.4
    grid_best = best([t for t in trials if t.stage == "grid"])
    assert b.errors < grid_best.errors  # the refinement improved on the grid
    assert best([Trial(1, 0, 5, 10, "grid"), Trial(2, 0, 5, 10, "grid")]).lm_weight == 1  # ties: earliest
    plateau = [Trial(a, 0, 0 if 1 <= a <= 3 else 5, 10, "grid") for a in range(5)]
    assert best(plateau).lm_weight == 2  # the middle of a tied plateau


def test_tuning_beats_bad_default(arpa):
    sentences = ["THE CAT SAT", "THE CAT RAN", "A RED HAT"]
    ems = [emission("THE CAT SAT", C_OR_H), emission("THE CAT RAN", C_OR_H), emission("A RED HAT")]
    dec = make_decoder("beam", VOCAB, SearchOptions(beam=10), lm=arpa)

    def evaluate(a: float, b: float) -> tuple[int, int]:
        dec.set_weights(a, b)
        errors = sum(h != r for h, r in zip((dec.decode(e).text for e in ems), sentences))
        return errors, 9

    bad = evaluate(0.0, 0.0)[0]
    trials = search(evaluate, 12)
    assert bad == 2 and best(trials).errors == 0


# --------------------------------------------------------------------------------------- stored emissions


def _corpus(tmp_path: Path, n: int = 5, split: str = "test") -> tuple[Path, list[str]]:
    """A split of short silent wavs whose transcripts alternate between two LM sentences."""
    data = tmp_path / "data"
    wavs = data / "wav"
    wavs.mkdir(parents=True, exist_ok=True)
    rows, words = [], []
    for i in range(n):
        samples = 4000 + 800 * i
        sf.write(wavs / f"{split}{i}.wav", np.zeros(samples, dtype=np.float32), 16000)
        rows.append((f"{split}{i}.wav", samples))
        words.append(normalize_transcript(["THE CAT SAT", "A RED HAT"][i % 2]))
    write_split(data, split, wavs, rows, words=words)
    return data, words


def _save_fake_emissions(directory: Path, split: str, words: list[str], sizes: list[int]) -> None:
    log_probs = [emission(w, C_OR_H if w == "THE CAT SAT" else None) for w in words]
    save_emissions(emissions_path(directory, split),
                   Emissions(log_probs, VOCAB, sizes, {"split": split, "forward_seconds": 0.5}))


def test_emissions_roundtrip_and_mismatch(tmp_path):
    data, words = _corpus(tmp_path)
    from s3l.manifest import load_split

    man = load_split(data, "test").manifest
    _save_fake_emissions(tmp_path, "test", words, list(man.sizes))
    em = load_emissions(emissions_path(tmp_path, "test"), man)
    assert em.vocab == VOCAB and len(em) == 5 and em.meta["forward_seconds"] == 0.5
    assert np.array_equal(em.log_probs[1], emission("A RED HAT"))
    _save_fake_emissions(tmp_path, "test", words[:4], list(man.sizes)[:4])
    with pytest.raises(S3LError, match="4 utterances but .*test.tsv lists 5"):
        load_emissions(emissions_path(tmp_path, "test"), man)
    _save_fake_emissions(tmp_path, "test", words, [1, *man.sizes[1:]])
    with pytest.raises(S3LError, match=r"utterance 1 has 1 samples but .*test.tsv:2 says 4000"):
        load_emissions(emissions_path(tmp_path, "test"), man)
    (tmp_path / "junk.emissions.npz").write_bytes(b"not numpy")
    with pytest.raises(S3LError, match="not an s3l emissions file"):
        load_emissions(tmp_path / "junk.emissions.npz")
    with pytest.raises(S3LError, match="save-emissions"):
        load_emissions(tmp_path / "missing.emissions.npz")


def _decode(*args: str):
    return CliRunner().invoke(app, ["decode", *args])


def test_decode_command_from_emissions(tmp_path, arpa):
    data, words = _corpus(tmp_path)
    _, dev_words = _corpus(tmp_path, 4, "dev")
    from s3l.manifest import load_split

    for split, w in (("test", words), ("dev", dev_words)):
        _save_fake_emissions(tmp_path / "em", split, w, list(load_split(data, split).manifest.sizes))
    out = tmp_path / "hyp"
    r = _decode("--data", str(data), "--split", "test", "--out", str(out), "--emissions", str(tmp_path / "em"))
    assert r.exit_code == 0, r.output
    hyps = (out / "test.hyp").read_text().splitlines()
    assert hyps == ["THE HAT SAT", "A RED HAT"] * 2 + ["THE HAT SAT"]  # greedy
    assert (out / "test.ref").read_text().splitlines() == words
    summary = json.loads((out / "test.json").read_text())
    assert summary["decoder"] == "greedy" and summary["wer"] == pytest.approx(100 * 3 / 15)
    assert summary["forward_seconds"] == 0.5 and summary["forward_seconds_recorded"]
    assert summary["rtf"]["search"] > 0 and summary["rtf"]["forward"] == pytest.approx(0.5 / summary["audio_seconds"])

    r = _decode("--data", str(data), "--split", "test", "--out", str(out), "--emissions", str(tmp_path / "em"))
    assert r.exit_code != 0 and "already exists" in str(r.exception)

    r = _decode("--data", str(data), "--split", "test", "--out", str(out), "--emissions", str(tmp_path / "em"),
                "--lm", str(arpa), "--lm-weight", "0", "--word-score", "0", "--tune", "--tune-trials", "10",
                "--beam", "10", "--force")
    assert r.exit_code == 0, r.output
    assert (out / "test.hyp").read_text().splitlines() == words  # tuned LM decoding fixes every error
    tune = json.loads((out / "dev.tune.json").read_text())
    assert len(tune["trials"]) == 10 and tune["best"]["wer"] == 0.0
    assert min(t["wer"] for t in tune["trials"]) == 0.0 and max(t["wer"] for t in tune["trials"]) > 0
    summary = json.loads((out / "test.json").read_text())
    assert summary["wer"] == 0.0 and summary["tuned_on"] == "dev"
    assert summary["lm_weight"] == tune["best"]["lm_weight"] and summary["word_score"] == tune["best"]["word_score"]


def test_decode_errors(tmp_path, arpa):
    data, words = _corpus(tmp_path)
    out = tmp_path / "hyp"
    base = ["--data", str(data), "--split", "test", "--out", str(out)]
    r = _decode(*base)
    assert r.exit_code != 0 and "either --checkpoint" in str(r.exception)
    r = _decode(*base, "--emissions", str(tmp_path), "--tune")
    assert r.exit_code != 0 and "needs --lm" in str(r.exception)
    r = _decode(*base, "--emissions", str(tmp_path))
    assert r.exit_code != 0 and "test.emissions.npz: emissions not found" in str(r.exception)
    r = _decode(*base, "--checkpoint", str(tmp_path / "none.safetensors"))
    assert r.exit_code != 0 and "checkpoint not found" in str(r.exception)
    r = _decode(*base, "--emissions", str(tmp_path), "--lm", str(tmp_path / "none.arpa"))
    assert r.exit_code != 0 and "language model not found" in str(r.exception)
    r = _decode(*base, "--emissions", str(tmp_path), "--lm", str(arpa), "--tune", "--tune-split", "nosuch")
    assert r.exit_code != 0 and "split 'nosuch' not found" in str(r.exception)
    binary = tmp_path / "lm.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0")
    with pytest.raises(S3LError, match="does not list its words"):
        lm_unigrams(binary)
    (tmp_path / "words.txt").write_text("CAT\nHAT\n")
    assert lm_unigrams(binary, tmp_path / "words.txt") == ["CAT", "HAT"]
    wrd = data / "test.wrd"
    wrd.write_text("THE CAT SAT\n\nA\nB\nC\n")
    r = _decode(*base, "--emissions", str(tmp_path))
    assert r.exit_code != 0 and "test.wrd:2: empty transcript" in str(r.exception)


def test_decode_two_processes_match_one(tmp_path, arpa):
    data, words = _corpus(tmp_path, 5)
    from s3l.manifest import load_split

    _save_fake_emissions(tmp_path / "em", "test", words, list(load_split(data, "test").manifest.sizes))
    one = _decode("--data", str(data), "--split", "test", "--out", str(tmp_path / "hyp1"), "--emissions",
                  str(tmp_path / "em"), "--lm", str(arpa), "--beam", "10")
    assert one.exit_code == 0, one.output
    out = tmp_path / "hyp2"
    cmd = [sys.executable, "-m", "s3l", "decode", "--data", str(data), "--split", "test", "--out", str(out),
           "--emissions", str(tmp_path / "em"), "--lm", str(arpa), "--beam", "10", "--nproc", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "test.json").read_text())["nproc"] == 2
    two = (out / "test.hyp").read_text()
    assert two == (tmp_path / "hyp1" / "test.hyp").read_text() and two.splitlines() == words


def test_decode_end_to_end_with_a_checkpoint(tmp_path, arpa):
    """A tiny randomly initialised CTC model over generated audio: every output file, line counts, emissions."""
    import torch

    from s3l.models import CTCModel, encoder_frames, preset, save_model

    torch.manual_seed(0)
    ckpt = tmp_path / "ctc.safetensors"
    save_model(ckpt, CTCModel(preset("tiny", "contrastive"), VOCAB))
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    (data / "wav").mkdir(parents=True)
    for split, n in (("test", 5), ("dev", 2)):
        rows = []
        for i in range(n):
            samples = int(rng.integers(4000, 10000))
            sf.write(data / "wav" / f"{split}{i}.wav", 0.1 * rng.standard_normal(samples).astype(np.float32), 16000)
            rows.append((f"{split}{i}.wav", samples))
        words = ["THE CAT SAT", "A RED HAT", "THE DOG RAN", "HE HAD A HAT", "THE CAT"][:n]
        write_split(data, split, data / "wav", rows, words=words)
    out = tmp_path / "hyp"
    r = _decode("--data", str(data), "--split", "test", "--out", str(out), "--checkpoint", str(ckpt),
                "--save-emissions", "--device", "cpu", "--max-tokens", "40000", "--batch-size", "2")
    assert r.exit_code == 0, r.output
    assert "RTF" in r.output
    hyps = (out / "test.hyp").read_text().split("\n")
    assert len(hyps) == 6 and hyps[-1] == ""  # five lines, newline-terminated
    assert all(h == h.upper() for h in hyps)
    assert (out / "test.ref").read_text() == (data / "test.wrd").read_text()
    summary = json.loads((out / "test.json").read_text())
    assert summary["utterances"] == 5 and summary["ref_words"] == 15 and summary["decoder"] == "greedy"
    assert summary["forward_seconds"] > 0 and not summary["forward_seconds_recorded"]
    from s3l.manifest import load_split

    man = load_split(data, "test").manifest
    em = load_emissions(emissions_path(out, "test"), man)
    assert em.vocab == VOCAB and em.meta["frame_seconds"] == 0.02  # the conv encoder's 320-sample hop
    assert [len(x) for x in em.log_probs] == [encoder_frames(n) for n in man.sizes]
    assert all(np.allclose(np.exp(x).sum(axis=1), 1.0, atol=1e-4) for x in em.log_probs)
    assert [greedy(x, VOCAB) for x in em.log_probs] == (out / "test.hyp").read_text().splitlines()

    # LM decoding with tuning on dev, running the model on both splits, then the same from saved emissions.
    out2 = tmp_path / "hyp_lm"
    lm_args = ["--lm", str(arpa), "--tune", "--tune-trials", "4", "--beam", "5"]
    r = _decode("--data", str(data), "--split", "test", "--out", str(out2), "--checkpoint", str(ckpt),
                "--save-emissions", "--device", "cpu", *lm_args)
    assert r.exit_code == 0, r.output
    assert (out2 / "dev.emissions.npz").is_file()
    assert len(json.loads((out2 / "dev.tune.json").read_text())["trials"]) == 4
    out3 = tmp_path / "hyp_lm_again"
    r = _decode("--data", str(data), "--split", "test", "--out", str(out3), "--emissions", str(out2), *lm_args,
                "--ctm")
    assert r.exit_code == 0, r.output
    assert (out3 / "test.hyp").read_text() == (out2 / "test.hyp").read_text()
    hyps = (out3 / "test.hyp").read_text().splitlines()
    assert len(hyps) == 5
    from s3l.decode.ctm import read_ctm

    ctm = read_ctm(out3 / "test.ctm")
    assert [w.word for w in ctm] == " ".join(hyps).split()  # one line per hypothesis word, in order
    for w in ctm:
        i = man.paths.index(w.utt + ".wav")
        assert w.duration >= 0.02 and w.start + w.duration <= man.sizes[i] / 16000 + 1e-9
