"""The modified Kneser-Ney estimator against hand-worked numbers and an independent implementation, via kenlm."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import kenlm
import numpy as np
import pytest
from typer.testing import CliRunner

from s3l.cli import app
from s3l.errors import S3LError
from s3l.lm import FALLBACK_DISCOUNTS, LMConfig, arpa_unigrams, build_lm, estimate, load_kenlm, write_arpa


def _model(tmp_path, sentences, order, fallback=None) -> kenlm.Model:
    path = tmp_path / "lm.arpa"
    write_arpa(estimate(sentences, order, fallback), path)
    return load_kenlm(path)


def _word_scores(lm: kenlm.Model, sentence: str) -> list[float]:
    return [score for score, _, _ in lm.full_scores(sentence, bos=True, eos=True)]


# --------------------------------------------------------------------------------------- worked by hand


def test_bigram_worked_by_hand(tmp_path):
    # Corpus "<s> A B </s>", "<s> A C </s>", "<s> B </s>"; every order lacks count-3 n-grams, so the closed form
    # fails and the fallback discounts D1 = 0.5, D2 = 1, D3+ = 1.5 apply.
    lm = _model(tmp_path, [["A", "B"], ["A", "C"], ["B"]], 2, FALLBACK_DISCOUNTS)
    # Unigram adjusted counts = distinct left words: A {<s>} 1, B {A,<s>} 2, C {A} 1, </s> {B,C} 2; total 6.
    # gamma() = (0.5 * 2 + 1 * 2) / 6 = 0.5, spread over the 5 words <unk> </s> A B C (not <s>).
    p_a = (1 - 0.5) / 6 + 0.5 / 5  # 0.18333
    p_b = (2 - 1) / 6 + 0.5 / 5  # 0.26667
    p_c = p_a
    p_eos = p_b
    p_unk = 0.5 / 5  # <unk> gets only the interpolation mass
    assert p_a + p_b + p_c + p_eos + p_unk == pytest.approx(1.0)
    # Bigrams keep raw counts. Context <s>: A 2, B 1 -> gamma = (0.5 + 1) / 3 = 0.5.
    p_a_bos = (2 - 1) / 3 + 0.5 * p_a  # 0.425
    p_b_bos = (1 - 0.5) / 3 + 0.5 * p_b  # 0.3
    # Context A: B 1, C 1 -> gamma = 1 / 2. Context B: </s> 2 -> gamma = 1/2. Context C: </s> 1 -> gamma = 1/2.
    p_c_a = 0.5 / 2 + 0.5 * p_c
    p_eos_c = 0.5 / 1 + 0.5 * p_eos
    assert _word_scores(lm, "A C") == pytest.approx([math.log10(p) for p in (p_a_bos, p_c_a, p_eos_c)], abs=1e-5)
    # Unseen bigrams back off through gamma(context).
    want = [math.log10(p) for p in (p_b_bos, 0.5 * p_a, 0.5 * p_eos)]  # B|<s>, A|B, </s>|A
    assert _word_scores(lm, "B A") == pytest.approx(want, abs=1e-5)
    # An unknown word: p(<unk>|<s>) = gamma(<s>) p(<unk>); <unk> is never a context, so </s> falls to the unigram.
    assert _word_scores(lm, "D") == pytest.approx([math.log10(0.5 * p_unk), math.log10(p_eos)], abs=1e-5)


# --------------------------------------------------------------------------- independent implementation


def _reference_kn(sentences: list[list[str]], order: int):
    """Straightforward dictionary implementation of interpolated modified KN with lmplz's conventions."""
    raw: list[Counter] = [Counter() for _ in range(order + 1)]
    for s in sentences:
        t = ["<s>", *s, "</s>"]
        for n in range(1, order + 1):
            for i in range(len(t) - n + 1):
                raw[n][tuple(t[i : i + n])] += 1
    left: dict[tuple, set] = defaultdict(set)
    for n in range(2, order + 1):
        for g in raw[n]:
            left[g[1:]].add(g[0])
    adj: list[dict] = [{} for _ in range(order + 1)]
    for n in range(1, order + 1):
        for g, c in raw[n].items():
            adj[n][g] = c if (n == order or g[0] == "<s>") else len(left[g])
    adj[1][("<s>",)] = 0
    adj[1][("<unk>",)] = 0
    discounts = {}
    for n in range(1, order + 1):
        nk = Counter(adj[n].values())
        y = nk[1] / (nk[1] + 2 * nk[2])
        discounts[n] = [0.0] + [k - (k + 1) * y * nk[k + 1] / nk[k] for k in (1, 2, 3)]
    total: dict[tuple, float] = defaultdict(float)
    mass: dict[tuple, float] = defaultdict(float)
    for n in range(1, order + 1):
        for g, a in adj[n].items():
            total[g[:-1]] += a
            mass[g[:-1]] += discounts[n][min(a, 3)]
    vocab_size = len(adj[1]) - 1  # without <s>

    def prob(w: str, h: tuple) -> float:
        if h and total.get(h, 0) == 0:
            return prob(w, h[1:])  # h never seen as a context: plain back-off
        n = len(h) + 1
        a = adj[n].get((*h, w), 0)
        lower = 1.0 / vocab_size if not h else prob(w, h[1:])
        return (a - discounts[n][min(a, 3)]) / total[h] + mass[h] / total[h] * lower

    return prob, discounts


def _zipf_corpus(seed: int, vocab: int, n: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    return [[_name(i) for i in rng.choice(vocab, size=rng.integers(1, 9), p=p)] for _ in range(n)]


def _name(i: int) -> str:
    """Letters-only word for index i (digits would not survive transcript normalisation)."""
    return "W" + chr(65 + i // 26 % 26) + chr(65 + i % 26)


def test_four_gram_matches_independent_estimate(tmp_path):
    train = _zipf_corpus(0, 300, 800)
    held_out = _zipf_corpus(1, 320, 40)  # includes words the model never saw
    model = estimate(train, 4)
    ref_prob, ref_discounts = _reference_kn(train, 4)
    for n, o in enumerate(model.orders, start=1):
        assert not o.fallback
        assert o.discounts == pytest.approx(ref_discounts[n][1:])
    path = tmp_path / "lm.arpa"
    write_arpa(model, path)
    lm = load_kenlm(path)
    known = set(model.vocab)
    total_ref, total_lm, tokens = 0.0, 0.0, 0
    for s in held_out + train[:20]:
        words = [w if w in known else "<unk>" for w in s] + ["</s>"]
        ctx = ("<s>",)
        ref = []
        for w in words:
            ref.append(math.log10(ref_prob(w, ctx[-3:])))
            ctx = (*ctx, w)
        got = _word_scores(lm, " ".join(s))
        assert got == pytest.approx(ref, abs=2e-5)
        total_ref += sum(ref)
        total_lm += lm.score(" ".join(s), bos=True, eos=True)
        tokens += len(words)
    assert 10 ** (-total_lm / tokens) == pytest.approx(10 ** (-total_ref / tokens), rel=1e-4)


def test_probabilities_sum_to_one(tmp_path):
    train = _zipf_corpus(0, 300, 800)
    model = estimate(train, 4)
    path = tmp_path / "lm.arpa"
    write_arpa(model, path)
    lm = load_kenlm(path)
    predicted = [w for w in model.vocab if w != "<s>"]
    for context in ([], train[0][:1], train[0][:3], train[5][:2], [_name(1)] * 3, ["NEVER", "SEEN"]):
        state = kenlm.State()
        lm.BeginSentenceWrite(state)
        for w in context:
            nxt = kenlm.State()
            lm.BaseScore(state, w, nxt)
            state = nxt
        total = sum(10 ** lm.BaseScore(state, w, kenlm.State()) for w in predicted)
        assert total == pytest.approx(1.0, abs=1e-4), context


# ------------------------------------------------------------------------------------------ files and CLI


def test_cli_writes_loadable_arpa(tmp_path):
    text = tmp_path / "lm.txt"
    text.write_text("\n".join(" ".join(s).lower() + "." for s in _zipf_corpus(0, 300, 800)) + "\n\n")
    out, js = tmp_path / "lm.arpa", tmp_path / "lm.json"
    result = CliRunner().invoke(app, ["prep", "lm", str(text), "--order", "3", "--out", str(out), "--json", str(js)])
    assert result.exit_code == 0, result.output
    summary = json.loads(js.read_text())
    assert summary["order"] == 3 and summary["empty_lines_skipped"] == 1 and summary["sentences"] == 800
    lm = load_kenlm(out)
    assert lm.order == 3
    unigrams = arpa_unigrams(out)
    assert _name(0) in unigrams and "<s>" not in unigrams and "<unk>" not in unigrams  # text was normalised
    assert len(unigrams) == summary["vocab"] == summary["ngrams"][0] - 3
    again = CliRunner().invoke(app, ["prep", "lm", str(text), "--out", str(out)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)


def test_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n ... \n")
    with pytest.raises(S3LError, match="no words"):
        build_lm(LMConfig(text=empty, out=tmp_path / "a.arpa"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello world\nbad \xff byte\n")
    with pytest.raises(S3LError, match=r"bad.txt:2: not valid UTF-8"):
        build_lm(LMConfig(text=bad, out=tmp_path / "a.arpa"))
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("a b\na c\nb\n")
    with pytest.raises(S3LError, match=r"tiny.txt: cannot estimate Kneser-Ney discounts for 1-grams.*fallback"):
        build_lm(LMConfig(text=tiny, out=tmp_path / "a.arpa", order=2))
    assert not (tmp_path / "a.arpa").exists()
    with pytest.raises(S3LError, match="not found"):
        build_lm(LMConfig(text=tmp_path / "missing.txt", out=tmp_path / "a.arpa"))
    result = CliRunner().invoke(app, ["prep", "lm", str(tiny), "--out", str(tmp_path / "a.arpa"),
                                      "--discount-fallback", "0.5,3"])
    assert result.exit_code != 0 and "outside [0, 2]" in str(result.exception)
    junk = tmp_path / "junk.arpa"
    junk.write_text("not an arpa file\n")
    with pytest.raises(S3LError, match="junk.arpa: kenlm cannot load"):
        load_kenlm(junk)
    with pytest.raises(S3LError, match="no 1-grams"):
        arpa_unigrams(junk)
