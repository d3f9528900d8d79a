"""The decoder interface: the lexicon decoder (flashlight-text + KenLM), word timings (--ctm), tuning with each LM
decoder, bounded token candidates, and the one-line errors for lexicons and decoder options."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_cli_errors import assert_user_error, run
from test_decode import C_OR_H, LM_TEXT, VOCAB, _corpus, _decode, _save_fake_emissions, emission
from typer.testing import CliRunner

from s3l.cli import app
from s3l.decode.ctc import align
from s3l.decode.ctm import ctm_lines, read_ctm
from s3l.decode.decoder import Hypothesis, SearchOptions, make_decoder, path_hypothesis
from s3l.decode.emissions import Emissions, emissions_path, frame_seconds, save_emissions
from s3l.decode.lexicon import read_lexicon, spell_words
from s3l.errors import S3LError
from s3l.lm import FALLBACK_DISCOUNTS, estimate, write_arpa
from s3l.manifest import load_split, write_split

LM_WORDS = set(" ".join(LM_TEXT).split())


@pytest.fixture(scope="module")
def arpa(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "lm.arpa"
    write_arpa(estimate([s.split() for s in LM_TEXT], 3, FALLBACK_DISCOUNTS), path)
    return path


def from_path(symbols: str) -> np.ndarray:
    """(T, V) log-probs whose best path is ``symbols`` (space separated, ``_`` = blank), each frame at p 0.9."""
    rows = []
    for s in symbols.split():
        row = np.full(len(VOCAB), 0.1 / (len(VOCAB) - 1))
        row[0 if s == "_" else VOCAB.index(s)] = 0.9
        rows.append(row)
    return np.log(np.stack(rows)).astype(np.float32)


def lexicon_decoder(arpa: Path, **options):
    return make_decoder("lexicon", VOCAB, SearchOptions(**{"beam": 20, "word_score": 0.0, **options}), lm=arpa)


# --------------------------------------------------------------------------------------- the lexicon decoder


def test_lexicon_from_unigrams_never_outputs_a_word_outside_it(arpa: Path, tmp_path: Path):
    # "COG" is spelled clearly (p 0.9 per letter) but is no word of the LM.
    em = emission("THE COG SAT")
    assert make_decoder(None, VOCAB, SearchOptions()).decode(em).text == "THE COG SAT"  # greedy
    # pyctcdecode glues the letters it tries into an unknown word (here only each frame's best)
    beam = make_decoder("beam", VOCAB, SearchOptions(beam=20, word_score=0.0, beam_size_token=1), lm=arpa)
    assert beam.decode(em).text == "THE COG SAT"
    lex = lexicon_decoder(arpa)
    words = lex.decode(em).words
    assert "COG" not in words and set(words) <= LM_WORDS and len(words) == 3
    assert lex.describe()["lexicon_words"] == len(LM_WORDS) and lex.describe()["lexicon_skipped"] == 0
    # A word list without CAT: even a perfectly spelled CAT cannot come out.
    (tmp_path / "words.txt").write_text("THE\nSAT\nHAT\nMAT\nQUIZ\n")  # Q, U, I, Z: not model letters
    lex = make_decoder("lexicon", VOCAB, SearchOptions(beam=20, word_score=0.0), lm=arpa,
                       unigrams=tmp_path / "words.txt")
    h = lex.decode(emission("THE CAT SAT"))
    assert h.words[0] == "THE" and h.words[-1] == "SAT" and "CAT" not in h.words
    assert set(h.words) <= {"THE", "SAT", "HAT", "MAT"}
    assert lex.describe()["lexicon_words"] == 4 and lex.describe()["lexicon_skipped"] == 1


def test_lexicon_decoder_uses_the_lm_like_the_beam_decoder(arpa: Path):
    em = emission("THE CAT SAT", C_OR_H)  # the model prefers H: greedy says THE HAT SAT
    lex = lexicon_decoder(arpa, beam_threshold=25.0)
    assert lex.decode(em).text == "THE CAT SAT"
    lex.set_weights(0.0, 0.0)
    assert lex.decode(em).text == "THE HAT SAT"  # without the LM the acoustics win
    d = lex.describe()
    assert (d["lm_weight"], d["word_score"], d["lm_log"], d["beam"], d["beam_threshold"]) == (0.0, 0.0, "log10", 20,
                                                                                              25.0)
    assert d["unk_score"] is None and d["sil_score"] == 0.0 and d["beam_size_token"] == len(VOCAB)


def test_unknown_words_with_a_finite_unk_score_are_spelled_from_the_path(arpa: Path):
    em = emission("THE DO SAT")  # DO is only a prefix of DOG (and neither D nor O is a word)
    assert "DO" not in lexicon_decoder(arpa).decode(em).words
    h = lexicon_decoder(arpa, unk_score=-0.5, lm_weight=0.0).decode(em)  # fewer unknown words win
    assert h.words == ("THE", "DO", "SAT") and h.spans[1] == (8, 10)


def test_max_look_ahead_can_prune_the_word_the_context_predicts(arpa: Path):
    # The C of CAT (after A) is heard as T: p(T) 0.6, p(C) 0.3. With max smearing the T... prefix carries THE's
    # unigram (the most frequent word) as look-ahead and, in a beam of 2, pushes out the C... hypotheses before
    # CAT ends and the trigram "A CAT" pays for it; without look-ahead both survive until the word is scored.
    em = emission("A CAT SAT ON A MAT", {2: {"T": 0.6, "C": 0.3}})
    by = {m: lexicon_decoder(arpa, beam=2, lm_weight=2.0, smearing=m) for m in ("max", "none")}
    assert by["none"].decode(em).text == "A CAT SAT ON A MAT"
    # CAT is pruned; what comes instead varies from process to process ("A THE ON A MAT", "A THE SAT ON A MAT",
    # "A"): flashlight orders hypotheses of equal score differently from run to run
    assert "CAT" not in by["max"].decode(em).words
    assert by["none"].describe()["smearing"] == "none" and by["max"].describe()["smearing"] == "max"
    assert lexicon_decoder(arpa).describe()["smearing"] == "max"  # fairseq's W2lKenLMDecoder


def test_log_add_scores_the_sum_over_ctc_paths(arpa: Path):
    # No LM weight: the acoustics decide. The C of CAT is spread over three frames (p 0.3 each, blank 0.1 / 0.6 /
    # 0.6), an H is sharp on the first (p 0.5). H's best path beats every single C path; the C paths together
    # (C then blanks, CC, CCC, blank then C, ...) outweigh H's.
    spread = [{"C": 0.3, "H": 0.5, "<blank>": 0.1}, {"C": 0.3, "<blank>": 0.6}, {"C": 0.3, "<blank>": 0.6}]
    rows = []
    for word in ("THE", "CAT", "HAD", "A", "HAT"):
        for j, c in enumerate(word):
            rows += spread if (word, j) == ("CAT", 0) else [{c: 0.9}]
            rows.append({"<blank>": 0.9})
        rows += [{"|": 0.9}, {"<blank>": 0.9}]
    em = np.log(np.stack([_distribution(r) for r in rows])).astype(np.float32)
    best_path = lexicon_decoder(arpa, lm_weight=0.0)
    summed = lexicon_decoder(arpa, lm_weight=0.0, log_add=True)
    assert best_path.decode(em).text == "THE HAT HAD A HAT" and not best_path.describe()["log_add"]
    assert summed.decode(em).text == "THE CAT HAD A HAT" and summed.describe()["log_add"]


def _distribution(probs: dict[str, float]) -> np.ndarray:
    row = np.full(len(VOCAB), (1.0 - sum(probs.values())) / (len(VOCAB) - len(probs)))
    for sym, p in probs.items():
        row[VOCAB.index(sym)] = p
    return row


def test_read_lexicon_and_spell_words(tmp_path: Path):
    path = tmp_path / "lex.txt"
    path.write_text("THE\tT H E |\nTHE\tT H E |\nTHE T H E E |\n\n<unk>\t|\nA\tA |\n")
    assert read_lexicon(path, VOCAB) == {"THE": [tuple("THE") + ("|",), tuple("THEE") + ("|",)], "A": [("A", "|")]}
    lexicon, skipped = spell_words(["HAT", "HAT", "</s>", "OX", "it"], VOCAB)  # X: not a model letter; lower case
    assert lexicon == {"HAT": [("H", "A", "T", "|")]} and skipped == 2


def test_lexicon_file_errors_name_file_and_line(arpa: Path, tmp_path: Path):
    with pytest.raises(S3LError, match="missing.txt: lexicon not found"):
        read_lexicon(tmp_path / "missing.txt", VOCAB)
    bad = tmp_path / "lex.txt"
    bad.write_text("THE T H E |\nOX O X |\n")
    with pytest.raises(S3LError, match=r"lex.txt:2: OX is spelled with 'X', which is not in the model's vocab"):
        read_lexicon(bad, VOCAB)
    bad.write_text("THE T H E |\nthe t h e |\n")
    with pytest.raises(S3LError, match=r"lex.txt:2: the is spelled with 't'"):
        read_lexicon(bad, VOCAB)
    bad.write_text("THE\n")
    with pytest.raises(S3LError, match=r"lex.txt:1: expected a word and its spelling"):
        read_lexicon(bad, VOCAB)
    bad.write_text("\n\n")
    with pytest.raises(S3LError, match="lex.txt: empty lexicon"):
        read_lexicon(bad, VOCAB)
    (tmp_path / "lower.txt").write_text("the\ncat\n")
    with pytest.raises(S3LError, match="none of its 2 words can be spelled with the model's letters"):
        make_decoder("lexicon", VOCAB, SearchOptions(), lm=arpa, unigrams=tmp_path / "lower.txt")
    unigram_lm = tmp_path / "unigram.arpa"
    write_arpa(estimate([s.split() for s in LM_TEXT], 1, FALLBACK_DISCOUNTS), unigram_lm)
    with pytest.raises(S3LError, match="unigram.arpa: kenlm cannot load this language model"):
        make_decoder("lexicon", VOCAB, SearchOptions(), lm=unigram_lm)


def test_decoder_option_errors_are_one_line(arpa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data, words = _corpus(tmp_path)
    _save_fake_emissions(tmp_path / "em", "test", words, list(load_split(data, "test").manifest.sizes))
    base = ["decode", "--data", data, "--split", "test", "--emissions", tmp_path / "em", "--out", tmp_path / "hyp"]
    lex = tmp_path / "lex.txt"
    lex.write_text("THE T H E |\nOX O X |\n")
    cases = [
        (["--lm", arpa, "--lexicon", tmp_path / "missing.txt"], "missing.txt: lexicon not found"),
        (["--lm", arpa, "--lexicon", lex], f"{lex}:2: OX is spelled with 'X'"),
        (["--lm", arpa, "--decoder", "beam", "--lexicon", lex], "--lexicon is used by --decoder lexicon only"),
        (["--decoder", "lexicon"], "--decoder lexicon needs a language model (--lm)"),
        (["--decoder", "greedy", "--lm", arpa], "--decoder greedy does not use --lm"),
        (["--decoder", "viterbi"], "--decoder must be one of greedy, beam, lexicon"),
        (["--lm", arpa, "--sil-score", "1"] + ["--decoder", "beam"], "--sil-score applies to --decoder lexicon"),
        (["--lm", arpa, "--token-min-logp", "-3"], "--token-min-logp applies to --decoder beam only, not lexicon"),
        (["--lm", arpa, "--decoder", "lexicon", "--unk-score", "inf"], "'--unk-score'"),
        (["--lm", arpa, "--smearing", "min"], "--smearing must be one of max, logadd, none, got 'min'"),
        (["--lm", arpa, "--decoder", "beam", "--smearing", "none"], "--smearing applies to --decoder lexicon only"),
        (["--lm", arpa, "--decoder", "beam", "--log-add"], "--log-add applies to --decoder lexicon only, not beam"),
    ]
    for extra, message in cases:
        status, err = run(capsys, [*base, *extra])
        assert_user_error(status, err, message)
    assert not (tmp_path / "hyp").exists()


# --------------------------------------------------------------------------------------------- word timings

# Known boundaries: THE on frames 2-6 (E held for two frames), CAT on 10-13, then silence.
TIMED = "_ _ T T H E E | | _ C A A T _ | _ _"
TIMED_SPANS = (("THE", 2, 6), ("CAT", 10, 13))


def test_every_decoder_reports_the_frames_of_the_words_letters(arpa: Path):
    em = from_path(TIMED)
    want = Hypothesis(tuple(w for w, _, _ in TIMED_SPANS), tuple((a, b) for _, a, b in TIMED_SPANS))
    for name in ("greedy", "beam", "lexicon"):
        dec = make_decoder(name, VOCAB, SearchOptions(beam=10, word_score=0.0), lm=None if name == "greedy" else arpa)
        assert dec.decode(em) == want, name
    # blanks split a repeated letter, | ends a word even at the very end, and the path may stop inside a word
    path = np.array([VOCAB.index(s) if s != "_" else 0 for s in "A _ A | T H E |".split()])
    assert path_hypothesis(path, VOCAB) == Hypothesis(("AA", "THE"), ((0, 2), (4, 6)))
    assert path_hypothesis(path[:5], VOCAB) == Hypothesis(("AA", "T"), ((0, 2), (4, 4)))
    assert ctm_lines("u1", want, 0.02) == ["u1 1 0.040 0.100 THE", "u1 1 0.200 0.080 CAT"]
    # the beam decoder's spans are its hypothesis's best path (Viterbi), whatever the path that spelled it
    assert align(em, ["THE", "CAT"], VOCAB) == want
    lead = from_path("| | T H E _ | C A T")  # a leading |, no trailing one
    assert align(lead, ["THE", "CAT"], VOCAB) == Hypothesis(("THE", "CAT"), ((2, 4), (7, 9)))
    assert align(from_path("T H E"), ["THE", "CAT"], VOCAB) is None  # too few frames
    assert align(em, ["THE", "FOX"], VOCAB) is None and align(em, [], VOCAB) == Hypothesis((), ())


def _timed_corpus(tmp_path: Path, frame_meta: float | None) -> tuple[Path, Path]:
    """Two utterances of the TIMED path (the second shifted by 5 blank frames), sizes matching 20 ms frames."""
    data, em_dir = tmp_path / "data", tmp_path / "em"
    (data / "wav").mkdir(parents=True)
    ems = [from_path(TIMED), from_path("_ " * 5 + TIMED)]
    sizes = [400 + 320 * (len(e) - 1) for e in ems]  # the feature encoder's frame count for these lengths
    for i, n in enumerate(sizes):
        sf.write(data / "wav" / f"u{i}.wav", np.zeros(n, dtype=np.float32), 16000)
    write_split(data, "test", data / "wav", [(f"u{i}.wav", n) for i, n in enumerate(sizes)],
                words=["THE CAT", "THE CAT"])
    meta = {"split": "test", "forward_seconds": 0.1} | ({} if frame_meta is None else {"frame_seconds": frame_meta})
    save_emissions(emissions_path(em_dir, "test"), Emissions(ems, VOCAB, sizes, meta))
    return data, em_dir


@pytest.mark.parametrize("decoder", ["greedy", "beam", "lexicon"])
def test_ctm_has_exact_word_times(decoder: str, arpa: Path, tmp_path: Path):
    data, em_dir = _timed_corpus(tmp_path, None)
    out = tmp_path / "hyp"
    lm = [] if decoder == "greedy" else ["--lm", str(arpa), "--word-score", "0"]
    r = _decode("--data", str(data), "--split", "test", "--emissions", str(em_dir), "--out", str(out), "--ctm",
                "--decoder", decoder, *lm)
    assert r.exit_code == 0, r.output
    words = read_ctm(out / "test.ctm")
    got = [(w.utt, w.channel, w.start, w.duration, w.word) for w in words]
    assert got == [("u0", 1, 0.04, 0.1, "THE"), ("u0", 1, 0.2, 0.08, "CAT"),
                   ("u1", 1, 0.14, 0.1, "THE"), ("u1", 1, 0.3, 0.08, "CAT")]
    summary = json.loads((out / "test.json").read_text())
    assert summary["frame_seconds"] == 0.02 and summary["ctm"] == str(out / "test.ctm")
    assert summary["decoder"] == decoder and summary["wer"] == 0.0


def test_ctm_frame_length_from_the_emissions_metadata(tmp_path: Path):
    data, em_dir = _timed_corpus(tmp_path, 0.04)
    out = tmp_path / "hyp"
    r = _decode("--data", str(data), "--split", "test", "--emissions", str(em_dir), "--out", str(out), "--ctm")
    assert r.exit_code == 0, r.output
    assert (out / "test.ctm").read_text().splitlines()[:2] == ["u0 1 0.080 0.200 THE", "u0 1 0.400 0.160 CAT"]
    # Emissions that neither record it nor have the 20 ms encoder's frame counts: refused, not guessed.
    odd = Emissions([from_path(TIMED)], VOCAB, [16000], {})
    with pytest.raises(S3LError, match="do not record their frame length"):
        frame_seconds(odd, "x.npz")
    assert frame_seconds(Emissions([from_path(TIMED)], VOCAB, [400 + 320 * 17], {}), "x.npz") == 0.02
    (tmp_path / "bad.ctm").write_text("u0 1 0.0 0.1 THE\nu0 1 zero 0.1 CAT\n")
    with pytest.raises(S3LError, match=r"bad.ctm:2: expected 'utt-id channel start duration WORD'"):
        read_ctm(tmp_path / "bad.ctm")


# ------------------------------------------------------------------------------------------------- tuning


@pytest.mark.parametrize("decoder", ["beam", "lexicon"])
def test_tuning_with_each_lm_decoder(decoder: str, arpa: Path, tmp_path: Path):
    data, words = _corpus(tmp_path)
    _, dev_words = _corpus(tmp_path, 4, "dev")
    for split, w in (("test", words), ("dev", dev_words)):
        _save_fake_emissions(tmp_path / "em", split, w, list(load_split(data, split).manifest.sizes))
    out = tmp_path / "hyp"
    r = CliRunner().invoke(app, [
        "decode", "--data", str(data), "--split", "test", "--out", str(out), "--emissions", str(tmp_path / "em"),
        "--lm", str(arpa), "--decoder", decoder, "--lm-weight", "0", "--word-score", "0", "--tune",
        "--tune-trials", "10", "--beam", "10"])
    assert r.exit_code == 0, r.output
    assert (out / "test.hyp").read_text().splitlines() == words  # the tuned weights fix the C/H confusions
    tune = json.loads((out / "dev.tune.json").read_text())
    assert tune["decoder"] == decoder and len(tune["trials"]) == 10 and tune["best"]["wer"] == 0.0
    assert max(t["wer"] for t in tune["trials"]) > 0  # some weights (LM weight 0) keep the errors
    summary = json.loads((out / "test.json").read_text())
    assert summary["version"] == 2 and summary["decoder"] == decoder and summary["tuned_on"] == "dev"
    assert (summary["lm_weight"], summary["word_score"]) == (tune["best"]["lm_weight"], tune["best"]["word_score"])
    assert summary["beam"] == 10 and summary["lm"] == str(arpa)
    assert summary["lm_log"] == {"beam": "ln", "lexicon": "log10"}[decoder]
    assert summary["beam_threshold"] == {"beam": 10.0, "lexicon": 25.0}[decoder]
    r = CliRunner().invoke(app, ["decode", "--data", str(data), "--split", "test", "--out", str(tmp_path / "g"),
                                 "--emissions", str(tmp_path / "em"), "--tune"])
    assert r.exit_code != 0 and "needs --lm" in str(r.exception)


# ------------------------------------------------------------------------------------------- bounded cost


def test_beam_size_token_limits_the_symbols_tried(arpa: Path):
    # Frame 4 is the C/H confusion; with one symbol per frame only H (the frame's best) can be tried.
    em = emission("THE CAT SAT", C_OR_H)
    for name in ("beam", "lexicon"):
        wide = make_decoder(name, VOCAB, SearchOptions(beam=20, word_score=0.0), lm=arpa)
        narrow = make_decoder(name, VOCAB, SearchOptions(beam=20, word_score=0.0, beam_size_token=1), lm=arpa)
        assert wide.decode(em).text == "THE CAT SAT", name
        assert narrow.decode(em).text == "THE HAT SAT", name
    opts = SearchOptions(unk_score=-math.inf).resolved("lexicon")
    assert (opts.beam_threshold, opts.sil_score, opts.token_min_logp) == (25.0, 0.0, None)
    beam = SearchOptions().resolved("beam")
    assert (beam.beam_threshold, beam.beam_size_token, beam.token_min_logp, beam.unk_score) == (10.0, 8, -5.0, -10.0)
