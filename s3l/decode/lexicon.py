"""The ``lexicon`` decoder: flashlight-text's lexicon-constrained CTC beam search with a KenLM model.

This is the wav2letter decoder the wav2vec 2.0 and HuBERT papers use (through fairseq's ``W2lKenLMDecoder``):
hypotheses grow along a trie of the lexicon's spellings, so every output word is a lexicon word; a finished word
adds ``lm_weight * log10 p_LM(word | history) + word_score`` (wav2letter's convention: the LM score in log10, as
KenLM returns it); ``</s>`` is scored at the end. Staying on ``|`` between words adds ``sil_score`` per frame.

Inside a word the LM is not known yet; each trie node carries a look-ahead score (``smearing``): the best unigram
log-probability of the words below it (``max``, fairseq's), their log-sum (``logadd``) or nothing (``none``). A
partial word pays the look-ahead of its node, and the word's LM score replaces it when the word ends. Unigram
look-ahead misjudges words that the context makes likely; with a strongly contextual LM (the synthetic corpus's)
``none`` kept the right hypotheses in a beam of 50 where ``max`` pruned them (README "Decoding", CHANGELOG).
``log_add`` scores a hypothesis by the sum over its CTC paths (as pyctcdecode merges beams) instead of the best
path (fairseq's).

The lexicon (fairseq / wav2letter format, one spelling per line, a word may have several lines)::

    HELLO	H E L L O |
    WORLD	W O R L D |

comes from ``--lexicon FILE``, or is built by spelling the words of the LM (its 1-grams, or ``--unigrams``) in the
model's letters, each followed by ``|``; words with a letter the model does not have are skipped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from s3l.decode.ctc import lm_unigrams
from s3l.decode.decoder import Hypothesis, SearchOptions
from s3l.errors import S3LError, where
from s3l.vocab import BLANK, WORD_SEP, check_vocab

UNK = "<unk>"
_SPECIAL = ("<s>", "</s>", UNK)

Lexicon = dict[str, list[tuple[str, ...]]]  # word -> spellings (symbols of the model vocabulary)


def read_lexicon(path: str | Path, vocab: Sequence[str]) -> Lexicon:
    """A wav2letter lexicon file, every symbol checked against ``vocab`` (errors name the file and line)."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: lexicon not found")
    symbols = set(vocab) - {BLANK}
    lexicon: Lexicon = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise S3LError(f"{path}: not valid UTF-8") from None
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise S3LError(f"{where(path, lineno)}: expected a word and its spelling, e.g. 'WORD W O R D |'")
        word, spelling = fields[0], tuple(fields[1:])
        bad = [s for s in spelling if s not in symbols]
        if bad:
            raise S3LError(f"{where(path, lineno)}: {word} is spelled with {bad[0]!r}, which is not in the model's "
                           f"vocabulary ({' '.join(sorted(symbols))})")
        if word in _SPECIAL:
            continue
        spellings = lexicon.setdefault(word, [])
        if spelling not in spellings:
            spellings.append(spelling)
    if not lexicon:
        raise S3LError(f"{path}: empty lexicon")
    return lexicon


def spell_words(words: Iterable[str], vocab: Sequence[str]) -> tuple[Lexicon, int]:
    """Each word spelled letter by letter then ``|``; returns the lexicon and how many words were skipped
    because a letter is not in ``vocab``."""
    letters = set(vocab) - {BLANK, WORD_SEP}
    lexicon: Lexicon = {}
    skipped = 0
    for w in dict.fromkeys(words):
        if w in _SPECIAL:
            continue
        if w and all(c in letters for c in w):
            lexicon[w] = [(*w, WORD_SEP)]
        else:
            skipped += 1
    return lexicon, skipped


class LexiconDecoder:
    """flashlight-text ``LexiconDecoder`` (CTC criterion, max over paths like fairseq's ``log_add=False``)."""

    name = "lexicon"
    uses_lm = True

    def __init__(self, vocab: Sequence[str], lm: str | Path, options: SearchOptions, lexicon: str | Path | None = None,
                 unigrams: str | Path | None = None) -> None:
        from flashlight.lib.text.decoder import SmearingMode, Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        from s3l.lm import load_kenlm

        check_vocab(vocab)
        options.check()
        self.vocab = list(vocab)
        self.options = options
        self.lm = str(lm)
        self.lexicon = None if lexicon is None else str(lexicon)
        self._blank, self._sil = 0, self.vocab.index(WORD_SEP)
        if lexicon is not None:
            spellings, self.skipped = read_lexicon(lexicon, vocab), 0
        else:
            words = lm_unigrams(lm, unigrams)
            spellings, self.skipped = spell_words(words, vocab)
            if not spellings:
                raise S3LError(f"{unigrams or lm}: none of its {len(words)} words can be spelled with the model's "
                               f"letters ({' '.join(self.vocab[2:])}); pass --lexicon FILE")
        self.words = len(spellings)
        self._dict = Dictionary([*spellings, UNK])
        self._unk = self._dict.get_index(UNK)
        self._dict.set_default_index(self._unk)
        self._lm = load_kenlm(lm, lambda p: KenLM(p, self._dict))
        index = {s: i for i, s in enumerate(self.vocab)}
        self._trie = Trie(len(self.vocab), self._sil)
        start = self._lm.start(False)
        for word, word_spellings in spellings.items():
            w = self._dict.get_index(word)
            _, score = self._lm.score(start, w)  # the unigram score, smeared over the trie for look-ahead
            for spelling in word_spellings:
                self._trie.insert([index[s] for s in spelling], w, score)
        self._trie.smear(getattr(SmearingMode, options.smearing.upper()))  # options resolved (make_decoder)
        self.set_weights(options.lm_weight, options.word_score)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        from flashlight.lib.text.decoder import CriterionType, LexiconDecoderOptions
        from flashlight.lib.text.decoder import LexiconDecoder as _Decoder

        o = self.options
        self._weights = (float(lm_weight), float(word_score))
        opts = LexiconDecoderOptions(
            beam_size=o.beam, beam_size_token=o.beam_size_token or len(self.vocab),
            beam_threshold=float(o.beam_threshold), lm_weight=self._weights[0], word_score=self._weights[1],
            unk_score=float(o.unk_score), sil_score=float(o.sil_score), log_add=bool(o.log_add),
            criterion_type=CriterionType.CTC)
        self._decoder = _Decoder(opts, self._trie, self._lm, self._sil, self._blank, self._unk, [], False)

    def decode(self, emission: np.ndarray) -> Hypothesis:
        em = np.ascontiguousarray(emission, dtype=np.float32)
        T, V = em.shape
        if T == 0:
            return Hypothesis((), ())
        results = self._decoder.decode(em.ctypes.data, T, V)
        if not results:
            return Hypothesis((), ())
        best = results[0]
        # tokens / words hold one entry for the start state, then one per frame (and one for the end state);
        # words[t + 1] is the word that frame t completed, -1 elsewhere.
        path = np.asarray(best.tokens[1 : T + 1], dtype=np.int64)
        ends = [(t, w) for t, w in enumerate(best.words[1 : T + 1]) if w >= 0]
        words, spans = [], []
        prev = -1
        for end, w in ends:
            frames = [t for t in range(prev + 1, end + 1) if path[t] not in (self._blank, self._sil)]
            spans.append((frames[0], frames[-1]) if frames else (end, end))
            if w == self._unk:  # only with a finite --unk-score: the letters the path spells
                letters = [self.vocab[path[t]] for i, t in enumerate(frames)
                           if i == 0 or path[t] != path[frames[i - 1]] or t != frames[i - 1] + 1]
                words.append("".join(letters).upper())
            else:
                words.append(self._dict.get_entry(w).upper())
            prev = end
        return Hypothesis(tuple(words), tuple(spans))

    def describe(self) -> dict:
        o = self.options
        return {"lm": self.lm, "lm_weight": self._weights[0], "word_score": self._weights[1], "lm_log": "log10",
                "beam": o.beam, "beam_threshold": o.beam_threshold,
                "beam_size_token": o.beam_size_token or len(self.vocab),
                "unk_score": o.unk_score if math.isfinite(o.unk_score) else None,  # null: unknown words never
                "sil_score": o.sil_score, "smearing": o.smearing, "log_add": bool(o.log_add),
                "lexicon": self.lexicon, "lexicon_words": self.words,
                "lexicon_skipped": self.skipped}

    def close(self) -> None:
        pass
