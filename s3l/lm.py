"""``s3l prep lm``: an interpolated modified Kneser-Ney n-gram estimator writing ARPA, for in-memory text.

It follows KenLM's ``lmplz`` (Heafield et al. 2013) with its default options, so the two agree on the same text:

* every sentence is ``<s> w1 ... wm </s>``; n-grams never cross sentences; empty lines are skipped;
* adjusted counts (Chen & Goodman 1998, §3.6 / Kneser-Ney): the highest order and n-grams starting with ``<s>``
  keep their raw counts; every other n-gram counts its distinct left extensions ``N1+(. g)``;
  the unigrams ``<s>`` and ``<unk>`` get count 0;
* three discounts per order from the count-of-counts of adjusted counts n1..n4 (Chen & Goodman eq. 26):
  ``Y = n1 / (n1 + 2 n2)``, ``D_k = k - (k + 1) Y n_{k+1} / n_k`` for k = 1, 2, 3+;
* interpolation: ``p(w|h) = (a(hw) - D(a(hw))) / sum_v a(hv) + gamma(h) p(w|h')`` with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / sum_v a(hv)``; the unigrams interpolate with the uniform
  distribution over the vocabulary including ``<unk>`` and ``</s>`` but not ``<s>`` (lmplz's default
  ``--interpolate_unigrams 1``), so ``<unk>`` receives ``gamma() / |V|``;
* ARPA backoff of a context is ``gamma(h)``; ``<s>`` has log10 probability -99.

Counting is vectorised with numpy: an n-gram is keyed by (index of its (n-1)-gram prefix, last word id), so each
order costs one ``np.unique`` over the token stream. For text that does not fit in memory use KenLM's ``lmplz``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from s3l.errors import S3LError
from s3l.fileio import atomic_open, atomic_write_text, check_overwrite, require_file
from s3l.manifest import normalize_transcript

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
# lmplz --discount_fallback default, applied only where the closed-form estimate fails and the user asked for it.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)


@dataclass(frozen=True)
class LMConfig:
    text: Path  # training text, one sentence per line (normalised like .wrd before counting)
    out: Path  # ARPA file to write
    order: int = 4
    discount_fallback: tuple[float, float, float] | None = None  # D1, D2, D3+ where the closed form fails
    json_out: Path | None = None  # also write the summary here
    force: bool = False


@dataclass
class Order:
    """One order of the model: n-grams sorted lexicographically by word id."""

    prefix: np.ndarray  # (M,) index of the (n-1)-gram prefix in the previous order (the word id for unigrams)
    word: np.ndarray  # (M,) last word id
    count: np.ndarray  # (M,) adjusted count
    discounts: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fallback: bool = False  # discounts came from the fallback, not the closed form
    log10_prob: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,)
    log10_backoff: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (M,) 0 where not a context


@dataclass
class KNModel:
    vocab: list[str]  # id -> word; 0 = <unk>, 1 = <s>, 2 = </s>, then the words in sorted order
    orders: list[Order]  # orders[n - 1] holds the n-grams
    sentences: int
    tokens: int  # words plus one </s> per sentence

    def ngrams(self, n: int) -> list[tuple[str, ...]]:
        """The n-grams of order ``n`` as word tuples, in table order."""
        ids = self._ids(n)
        return [tuple(self.vocab[i] for i in row) for row in ids.tolist()]

    def _ids(self, n: int) -> np.ndarray:
        """(M, n) word ids of the order-``n`` table."""
        o = self.orders[n - 1]
        if n == 1:
            return o.word[:, None]
        return np.concatenate([self._ids(n - 1)[o.prefix], o.word[:, None]], axis=1)


def estimate(sentences: Sequence[Sequence[str]], order: int,
             discount_fallback: tuple[float, float, float] | None = None) -> KNModel:
    """Interpolated modified Kneser-Ney estimate of an ``order``-gram model (see the module docstring).

    Raises :class:`S3LError` when the closed-form discounts fail (too little or artificial text) and no
    ``discount_fallback`` is given.
    """
    if order < 1:
        raise S3LError(f"--order must be at least 1, got {order}")
    sentences = [s for s in sentences if len(s)]
    if not sentences:
        raise S3LError("no words to estimate a language model from")
    words = sorted({w for s in sentences for w in s} - {UNK, BOS, EOS})
    vocab = [UNK, BOS, EOS, *words]
    index = {w: i for i, w in enumerate(vocab)}
    V = len(vocab)

    # Token stream of all sentences, each "<s> w1 .. wm </s>"; sent[i] says which sentence position i is in.
    lengths = np.array([len(s) + 2 for s in sentences], dtype=np.int64)
    tok = np.fromiter((index[w] for s in sentences for w in (BOS, *s, EOS)), dtype=np.int64, count=int(lengths.sum()))
    sent = np.repeat(np.arange(len(sentences)), lengths)
    L = len(tok)

    # Raw counts per order. idx[i] = table index of the n-gram starting at position i (-1 where it would cross
    # the sentence end); suffix[j] = table index in order n-1 of n-gram j's last n-1 words.
    raw: list[np.ndarray] = []
    prefixes: list[np.ndarray] = []
    lasts: list[np.ndarray] = []
    suffixes: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    first_word: list[np.ndarray] = []  # first word id of each n-gram (to find those starting with <s>)
    idx = tok.copy()
    unigram_counts = np.bincount(tok, minlength=V)
    raw.append(unigram_counts)
    prefixes.append(np.arange(V))
    lasts.append(np.arange(V))
    first_word.append(np.arange(V))
    for n in range(2, order + 1):
        end = np.arange(L) + n - 1
        valid = end < L
        valid[valid] = sent[end[valid]] == sent[valid]
        pos = np.nonzero(valid)[0]
        keys = idx[pos] * V + tok[pos + n - 1]
        table, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        first_pos = pos[first]
        prev_idx = idx
        idx = np.full(L, -1, dtype=np.int64)
        idx[pos] = inverse
        raw.append(counts)
        prefixes.append(table // V)
        lasts.append(table % V)
        suffixes.append(prev_idx[first_pos + 1])
        first_word.append(tok[first_pos])

    orders: list[Order] = []
    for n in range(1, order + 1):
        if n == order:
            count = raw[n - 1].copy()
        else:
            # Continuation count: distinct left extensions among the (n+1)-grams.
            count = np.bincount(suffixes[n], minlength=len(raw[n - 1])).astype(np.int64)
            starts_bos = first_word[n - 1] == index[BOS]
            count[starts_bos] = raw[n - 1][starts_bos]
        if n == 1:
            count[index[UNK]] = 0
            count[index[BOS]] = 0
        d, fell_back = _discounts(count, n, discount_fallback)
        orders.append(Order(prefix=prefixes[n - 1], word=lasts[n - 1], count=count, discounts=d, fallback=fell_back))

    _interpolate(orders, suffixes, V, bos=index[BOS])
    return KNModel(vocab=vocab, orders=orders, sentences=len(sentences), tokens=L - len(sentences))


def _discounts(count: np.ndarray, n: int,
               fallback: tuple[float, float, float] | None) -> tuple[tuple[float, float, float], bool]:
    nk = [int(np.sum(count == k)) for k in range(5)]
    problem = None
    for k in (1, 2, 3):
        if nk[k] == 0:
            problem = f"no {n}-grams with adjusted count {k}"
            break
    if problem is None:
        y = nk[1] / (nk[1] + 2 * nk[2])
        d = tuple(k - (k + 1) * y * nk[k + 1] / nk[k] for k in (1, 2, 3))
        bad = [k for k, dk in zip((1, 2, 3), d) if not 0.0 <= dk <= k]
        if not bad:
            return d, False  # type: ignore[return-value]
        problem = f"discount D{bad[0]} = {d[bad[0] - 1]:.3f} is out of range [0, {bad[0]}]"
    if fallback is None:
        raise S3LError(
            f"cannot estimate Kneser-Ney discounts for {n}-grams ({problem}; count-of-counts n1..n4 = "
            f"{nk[1:]}); the text is too small or artificial: use more text, a lower --order, or "
            "--discount-fallback"
        )
    return tuple(fallback), True  # type: ignore[return-value]


def _interpolate(orders: list[Order], suffixes: list[np.ndarray], V: int, bos: int) -> None:
    """Fill log10 probabilities and backoffs (gamma of each context) in place."""
    prob_lower: np.ndarray | None = None
    for n, o in enumerate(orders, start=1):
        a = o.count.astype(np.float64)
        d = np.array([0.0, *o.discounts])[np.minimum(o.count, 3)]  # D(a): 0 for a = 0, D1, D2, D3+
        if n == 1:
            total = a.sum()
            gamma = float(np.dot(o.discounts, _n123(o.count))) / total
            # Uniform over the vocabulary without <s> (it is never predicted).
            prob = (a - d) / total + gamma / (V - 1)
        else:
            # Rows with the same prefix are contiguous (the table is sorted by prefix index).
            ctx, start = np.unique(o.prefix, return_index=True)
            denom = np.add.reduceat(a, start)
            n1 = np.add.reduceat((o.count == 1).astype(np.float64), start)
            n2 = np.add.reduceat((o.count == 2).astype(np.float64), start)
            n3 = np.add.reduceat((o.count >= 3).astype(np.float64), start)
            d1, d2, d3 = o.discounts
            gamma_ctx = (d1 * n1 + d2 * n2 + d3 * n3) / denom
            group = np.searchsorted(ctx, o.prefix)
            assert prob_lower is not None
            prob = (a - d) / denom[group] + gamma_ctx[group] * prob_lower[suffixes[n - 1]]
            prev = orders[n - 2]
            prev.log10_backoff = np.zeros(len(prev.count))
            prev.log10_backoff[ctx] = np.log10(gamma_ctx)
        o.log10_prob = np.log10(prob)
        o.log10_backoff = np.zeros(len(o.count))
        prob_lower = prob
    orders[0].log10_prob[bos] = -99.0


def _n123(count: np.ndarray) -> np.ndarray:
    return np.array([np.sum(count == 1), np.sum(count == 2), np.sum(count >= 3)], dtype=np.float64)


def write_arpa(model: KNModel, path: str | Path) -> None:
    """Write the model in ARPA format (atomically). Backoffs are written only for n-grams that are contexts."""
    with atomic_open(path, "w") as f:
        f.write("\\data\\\n")
        for n, o in enumerate(model.orders, start=1):
            f.write(f"ngram {n}={len(o.count)}\n")
        for n, o in enumerate(model.orders, start=1):
            f.write(f"\n\\{n}-grams:\n")
            highest = n == len(model.orders)
            for gram, lp, bo in zip(model.ngrams(n), o.log10_prob.tolist(), o.log10_backoff.tolist()):
                text = " ".join(gram)
                if highest or bo == 0.0:
                    f.write(f"{lp:.7g}\t{text}\n")
                else:
                    f.write(f"{lp:.7g}\t{text}\t{bo:.7g}\n")
        f.write("\n\\end\\\n")


def read_sentences(path: str | Path) -> tuple[list[list[str]], int]:
    """Normalised sentences of a text file (one per line) and the number of lines skipped as empty."""
    path = require_file(path, "text file")
    sentences: list[list[str]] = []
    skipped = 0
    with open(path, "rb") as f:
        for lineno, raw_line in enumerate(f, start=1):
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError:
                raise S3LError(f"{path}:{lineno}: not valid UTF-8") from None
            words = normalize_transcript(line).split()
            if words:
                sentences.append(words)
            else:
                skipped += 1
    if not sentences:
        raise S3LError(f"{path}: no words after normalisation (empty text?)")
    return sentences, skipped


def build_lm(cfg: LMConfig) -> dict:
    """Estimate a model from ``cfg.text``, write ``cfg.out`` (and the JSON summary), print and return the summary."""
    check_overwrite([cfg.out] + ([cfg.json_out] if cfg.json_out else []), cfg.force)
    sentences, skipped = read_sentences(cfg.text)
    try:
        model = estimate(sentences, cfg.order, cfg.discount_fallback)
    except S3LError as e:
        raise S3LError(f"{cfg.text}: {e}") from None
    write_arpa(model, cfg.out)
    train_ppl = kenlm_perplexity(cfg.out, sentences)  # also proves the file loads in kenlm
    summary = {
        "text": str(cfg.text),
        "arpa": str(cfg.out),
        "order": cfg.order,
        "sentences": model.sentences,
        "empty_lines_skipped": skipped,
        "tokens": model.tokens,
        "vocab": len(model.vocab) - 3,
        "ngrams": [len(o.count) for o in model.orders],
        "discounts": [list(o.discounts) for o in model.orders],
        "fallback": [o.fallback for o in model.orders],
        "train_perplexity": train_ppl,
    }
    if cfg.json_out is not None:
        atomic_write_text(cfg.json_out, json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    return summary


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    from s3l.console import console

    table = Table(title=f"{summary['arpa']}: {summary['order']}-gram modified Kneser-Ney")
    for col in ("order", "n-grams", "D1", "D2", "D3+", "discounts"):
        table.add_column(col, justify="right")
    for n, (count, d, fb) in enumerate(zip(summary["ngrams"], summary["discounts"], summary["fallback"]), start=1):
        table.add_row(str(n), str(count), *(f"{x:.3f}" for x in d), "fallback" if fb else "closed form")
    console.print(table)
    console.print(
        f"{summary['sentences']} sentences, {summary['tokens']} tokens, {summary['vocab']} words"
        f" ({summary['empty_lines_skipped']} empty lines skipped); training perplexity "
        f"{summary['train_perplexity']:.2f}"
    )


def kenlm_perplexity(arpa: str | Path, sentences: Iterable[Sequence[str]]) -> float:
    """Per-token perplexity (``</s>`` included) of ``sentences`` under an ARPA/binary model loaded by kenlm."""
    lm = load_kenlm(arpa)
    total, n = 0.0, 0
    for s in sentences:
        total += lm.score(" ".join(s), bos=True, eos=True)
        n += len(s) + 1
    return float(10.0 ** (-total / max(n, 1)))


def load_kenlm(path: str | Path, loader: Callable[[str], Any] | None = None):  # -> kenlm.Model
    """Load an ARPA or KenLM binary model, silencing KenLM's loading chatter on stderr.

    ``loader`` (default ``kenlm.Model``) builds the model from the path, e.g. flashlight-text's ``KenLM`` bound to
    a word dictionary; its load errors become one-line :class:`S3LError`.
    """
    if loader is None:
        import kenlm

        loader = kenlm.Model
    path = require_file(path, "language model")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                return loader(str(path))
            except (OSError, RuntimeError, ValueError) as e:
                error = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    raise S3LError(f"{path}: kenlm cannot load this language model ({error})")


def arpa_unigrams(path: str | Path) -> list[str]:
    """The words of an ARPA model's 1-gram section, without ``<s>``, ``</s>`` and ``<unk>``."""
    path = require_file(path, "ARPA language model")
    words: list[str] = []
    section = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if line.startswith("\\") and (line.endswith(":") or line == "\\end\\"):
                section = line
                if section != "\\1-grams:" and words:
                    break
                continue
            if section == "\\1-grams:" and line:
                parts = line.split()
                if len(parts) < 2:
                    raise S3LError(f"{path}:{lineno}: malformed 1-gram line")
                if parts[1] not in (BOS, EOS, UNK):
                    words.append(parts[1])
    if not words:
        raise S3LError(f"{path}: no 1-grams found; is this an ARPA file?")
    return words
