"""Greedy decoding, the LM's word list, the Viterbi alignment of a hypothesis, and the ``beam`` decoder: pyctcdecode's
beam search with a KenLM model.

An emission is a ``(T, V)`` array of log-probabilities over the model vocabulary: ``vocab[0] == "<blank>"``, the
other symbols those of ``dict.ltr.txt`` with ``|`` the word boundary (see :mod:`s3l.decode.decoder`).

LM scores follow pyctcdecode: a word adds ``lm_weight * ln p_LM(word | history) + word_score`` to the CTC log
score (``alpha`` and ``beta`` there); ``</s>`` is scored at the end of the utterance. These are the "LM weight"
and "word insertion score" of wav2vec 2.0 / HuBERT decoding, with the LM log-probability in natural log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3l.decode.decoder import Hypothesis, SearchOptions
from s3l.errors import S3LError
from s3l.vocab import BLANK, WORD_SEP, check_vocab


def greedy(emission: np.ndarray, vocab: Sequence[str]) -> str:
    """Best path: argmax per frame, collapse repeats, drop blanks, ``|`` -> space.  ``emission``: (T, V)."""
    from s3l.decode.decoder import GreedyDecoder

    return GreedyDecoder(vocab).decode(emission).text


def pyctcdecode_labels(vocab: Sequence[str]) -> list[str]:
    """pyctcdecode's alphabet: the blank becomes ``""`` and the word boundary ``" "``."""
    return ["" if s == BLANK else " " if s == WORD_SEP else s for s in vocab]


def read_unigrams(path: str | Path) -> list[str]:
    """Words of a plain word list (whitespace separated, e.g. one per line)."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: unigram list not found")
    try:
        words = path.read_text(encoding="utf-8").split()
    except UnicodeDecodeError:
        raise S3LError(f"{path}: not valid UTF-8") from None
    if not words:
        raise S3LError(f"{path}: empty unigram list")
    return [w for w in words if w not in ("<s>", "</s>", "<unk>")]


def lm_unigrams(lm: str | Path, unigrams: str | Path | None = None) -> list[str]:
    """The words the beam search may produce: from ``unigrams`` if given, else the LM's 1-grams.

    An ARPA file lists them; a KenLM binary does not expose them through the Python module, so for ``X.bin``
    the 1-grams of ``X.arpa`` beside it are used, else a word list must be passed.
    """
    from s3l.fileio import require_file
    from s3l.lm import arpa_unigrams

    if unigrams is not None:
        return read_unigrams(unigrams)
    lm = require_file(lm, "language model")
    if not _is_kenlm_binary(lm):
        return arpa_unigrams(lm)
    sibling = lm.with_suffix(".arpa")
    if sibling.is_file():
        return arpa_unigrams(sibling)
    raise S3LError(
        f"{lm}: a binary KenLM model does not list its words; put the ARPA file it was built from beside it "
        f"({sibling.name}) or pass --unigrams WORDLIST"
    )


def align(emission: np.ndarray, words: Sequence[str], vocab: Sequence[str]) -> Hypothesis | None:
    """``words`` with the spans of their best CTC path through ``emission`` (T, V) (Viterbi): ``|`` between words,
    optional before the first and after the last, blanks anywhere. None if a symbol is not in ``vocab`` or the
    emission is too short for the words."""
    from s3l.decode.decoder import path_hypothesis

    if not words:
        return Hypothesis((), ())
    index = {s: i for i, s in enumerate(vocab)}
    sep = index[WORD_SEP]
    labels = [sep]
    for w in words:
        if any(c not in index for c in w):
            return None
        labels += [index[c] for c in w] + [sep]
    ext = np.zeros(2 * len(labels) + 1, dtype=np.int64)  # blank, label, blank, label, ..., blank
    ext[1::2] = labels
    S, T = len(ext), len(emission)
    skip = np.zeros(S, dtype=bool)  # s may follow s - 2 (over a blank) unless it is a blank or repeats s - 2
    skip[2:] = (ext[2:] != 0) & (ext[2:] != ext[:-2])
    score = np.full(S, -np.inf)
    score[:4] = emission[0, ext[:4]]  # may start on the leading | or skip it
    back = np.zeros((T, S), dtype=np.int8)  # 0: stayed, 1: came from s - 1, 2: from s - 2
    for t in range(1, T):
        one = np.concatenate([[-np.inf], score[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        cand = np.stack([score, one, two])  # (3, S)
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + emission[t, ext]
    end = S - 4 + int(np.argmax(score[S - 4 :]))  # may end on the trailing | or before it
    if not np.isfinite(score[end]):
        return None
    states = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        states[t] = end
        end -= back[t, end]
    return path_hypothesis(ext[states], vocab)


def _is_kenlm_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"mmap lm "  # KenLM's binary magic; anything else is read as ARPA


class _SmallVocabFilter(logging.Filter):
    """pyctcdecode warns whenever fewer than 1000 unigrams are given; small corpora are normal here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Is this small or artificial data?" not in record.getMessage()


def _language_model(kenlm_model, unigrams: list[str], alpha: float, beta: float, unk: float):  # -> LanguageModel
    """pyctcdecode's LanguageModel, except for hypotheses that end with a word boundary.

    At the end of the utterance pyctcdecode scores the unfinished word with ``</s>``; when the hypothesis ends
    with ``|`` (as fairseq-style models trained on .ltr usually emit) that word is ``""``, which kenlm scores as
    ``<unk>`` and pyctcdecode penalises with its unknown-word offset as well, so hypotheses that squeeze one more
    word into the trailing silence win. Here ``""`` scores only ``</s>``.
    """
    from pyctcdecode import LanguageModel
    from pyctcdecode.constants import LOG_BASE_CHANGE_FACTOR

    class _BoundaryAwareLM(LanguageModel):
        def score(self, prev_state, word: str, is_last_word: bool = False):  # type: ignore[override]
            if word:
                return super().score(prev_state, word, is_last_word)
            end = self._get_raw_end_score(prev_state) if is_last_word else 0.0
            return self.alpha * end * LOG_BASE_CHANGE_FACTOR, prev_state

    return _BoundaryAwareLM(kenlm_model, unigrams, alpha=alpha, beta=beta, unk_score_offset=unk)


class BeamDecoder:
    """pyctcdecode beam search with a KenLM model (``lm=None``: beam search without LM).

    Cost per frame is bounded by ``beam`` x the symbols tried: those above ``token_min_logp`` (and the frame's
    best), at most ``beam_size_token`` of them; hypotheses more than ``beam_threshold`` below the best are dropped.
    """

    name = "beam"

    def __init__(self, vocab: Sequence[str], lm: str | Path | None, unigrams: Sequence[str] | None,
                 options: SearchOptions) -> None:
        from pyctcdecode import Alphabet, BeamSearchDecoderCTC

        from s3l.lm import load_kenlm

        check_vocab(vocab)
        options.check()
        logging.getLogger("pyctcdecode.language_model").addFilter(_SmallVocabFilter())
        self.vocab = list(vocab)
        self.options = options
        self.lm = None if lm is None else str(lm)
        self.uses_lm = lm is not None
        self._weights = (float(options.lm_weight), float(options.word_score))
        alphabet = Alphabet.build_alphabet(pyctcdecode_labels(vocab))
        language_model = None
        if lm is not None:
            language_model = _language_model(load_kenlm(lm), list(unigrams or []), *self._weights,
                                             float(options.unk_score))
        self._decoder = BeamSearchDecoderCTC(alphabet, language_model)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        self._weights = (float(lm_weight), float(word_score))
        self._decoder.reset_params(alpha=self._weights[0], beta=self._weights[1])

    def decode(self, emission: np.ndarray) -> Hypothesis:
        if emission.shape[0] == 0:
            return Hypothesis((), ())
        o = self.options
        logits = np.ascontiguousarray(emission, dtype=np.float32)
        if o.beam_size_token is not None and o.beam_size_token < logits.shape[1]:
            # Symbols outside each frame's best beam_size_token fall below token_min_logp (pyctcdecode clips
            # log-probabilities at ln 1e-15 = -34.5, so they are never tried).
            logits = logits.copy()
            worst = np.argpartition(-logits, o.beam_size_token, axis=1)[:, o.beam_size_token:]
            np.put_along_axis(logits, worst, -1e4, axis=1)
        beams = self._decoder.decode_beams(logits, beam_width=o.beam, beam_prune_logp=-float(o.beam_threshold),
                                           token_min_logp=float(o.token_min_logp), prune_history=True)
        # pyctcdecode's text_frames come from whichever of the merged beams was listed first, not from the best
        # path, so the spans are those of the hypothesis's best path through the emission.
        words = [w for w, _ in beams[0][2]]
        aligned = align(emission, words, self.vocab)
        if aligned is not None:
            return aligned
        return Hypothesis(tuple(w.upper() for w in words), tuple((a, b - 1) for _, (a, b) in beams[0][2]))

    def describe(self) -> dict:
        o = self.options
        lm = self.lm is not None
        return {"lm": self.lm, "lm_weight": self._weights[0] if lm else None,
                "word_score": self._weights[1] if lm else None, "lm_log": "ln" if lm else None,
                "beam": o.beam, "beam_threshold": o.beam_threshold, "beam_size_token": o.beam_size_token,
                "token_min_logp": o.token_min_logp, "unk_score": o.unk_score if lm else None}

    def close(self) -> None:
        self._decoder.cleanup()
