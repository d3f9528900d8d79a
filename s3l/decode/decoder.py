"""One interface for every CTC decoder of ``s3l decode``, the options they share, and the factory that builds one.

A decoder turns one ``(T, V)`` emission (log-probabilities over the model vocabulary, ``vocab[0] == "<blank>"``,
``|`` the word boundary) into a :class:`Hypothesis`: upper-case words plus, for each word, the first and last
frame of its letters on the CTC path the decoder chose (for word timings, :mod:`s3l.decode.ctm`). Three kinds:

``greedy``   best path (no LM), :class:`GreedyDecoder`
``beam``     pyctcdecode's prefix beam search with a KenLM model, :class:`s3l.decode.ctc.BeamDecoder`
``lexicon``  flashlight-text's lexicon-constrained beam search with a KenLM model (the decoder of the wav2vec 2.0
             and HuBERT papers, through fairseq's ``W2lKenLMDecoder``), :class:`s3l.decode.lexicon.LexiconDecoder`

The command that runs them only calls ``decode``, ``set_weights`` (LM weight tuning), ``describe`` (settings for
``{split}.json``) and ``close``; it never asks which kind it has.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from s3l.errors import S3LError
from s3l.vocab import WORD_SEP

DECODERS = ("greedy", "beam", "lexicon")


@dataclass(frozen=True)
class Hypothesis:
    words: tuple[str, ...]  # upper-case
    spans: tuple[tuple[int, int], ...]  # per word: first and last frame (inclusive) of its letters on the path

    @property
    def text(self) -> str:
        return " ".join(self.words)


class Decoder(Protocol):
    name: str  # one of DECODERS
    uses_lm: bool  # set_weights means something (``--tune`` needs it)

    def decode(self, emission: np.ndarray) -> Hypothesis:
        """Best hypothesis for one ``(T, V)`` float32 emission."""
        ...

    def set_weights(self, lm_weight: float, word_score: float) -> None: ...

    def describe(self) -> dict:
        """The settings in force, JSON-ready (at least ``lm``, ``lm_weight``, ``word_score``; None without LM)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SearchOptions:
    """Settings of the beam-search decoders. ``None`` means the chosen decoder's own default (see ``resolved``).

    Defaults: LM weight 2 and word score -1 are those of fairseq's wav2vec 2.0 README (``--lm-weight 2
    --word-score -1 --sil-weight 0``); beam threshold 25, no unknown words and silence score 0 are fairseq's
    ``examples/speech_recognition/infer.py`` defaults for its wav2letter decoder; max smearing of the unigram
    look-ahead and the best path per hypothesis (``log_add`` off) are its ``W2lKenLMDecoder``'s. The papers tune with
    beam 500 for the 4-gram and test with 1,500 (wav2vec 2.0 §4.4); 50 keeps CPU decoding and tuning affordable.
    """

    beam: int = 50  # hypotheses kept after each frame
    lm_weight: float = 2.0  # weight of ln p_LM (beam, pyctcdecode's alpha) or log10 p_LM (lexicon, wav2letter's)
    word_score: float = -1.0  # added per word (beta / word insertion score)
    beam_threshold: float | None = None  # drop hypotheses this far below the best: lexicon 25, beam 10
    beam_size_token: int | None = None  # symbols tried per frame (the frame's best ones): beam 8, lexicon all
    token_min_logp: float | None = None  # beam: skip symbols below this log-probability unless a frame's best (-5)
    unk_score: float | None = None  # per unknown word: lexicon -inf (never), beam -10 (log10 units, before weight)
    sil_score: float | None = None  # lexicon: added per frame of silence (| between words), 0
    smearing: str | None = None  # lexicon: LM look-ahead inside a word, max | logadd | none (of its unigrams), max
    log_add: bool | None = None  # lexicon: a hypothesis scores the sum over its CTC paths, not the best one; False

    def resolved(self, decoder: str) -> SearchOptions:
        """These options with every ``None`` replaced by ``decoder``'s default; refuses options it does not use."""
        own = _DEFAULTS[decoder]
        for name in ("token_min_logp", "sil_score", "smearing", "log_add"):
            if getattr(self, name) is not None and name not in own:
                flag = "--" + name.replace("_", "-")
                raise S3LError(f"{flag} applies to --decoder {_owner(name)} only, not {decoder}")
        filled = {k: (own.get(k) if getattr(self, k) is None else getattr(self, k)) for k in _OPTIONAL}
        out = SearchOptions(beam=self.beam, lm_weight=self.lm_weight, word_score=self.word_score, **filled)
        out.check()
        return out

    def check(self) -> None:
        if self.beam < 1:
            raise S3LError(f"--beam must be at least 1, got {self.beam}")
        if self.beam_size_token is not None and self.beam_size_token < 1:
            raise S3LError(f"--beam-size-token must be at least 1, got {self.beam_size_token}")
        if self.beam_threshold is not None and not 0 <= self.beam_threshold < math.inf:
            raise S3LError(f"--beam-threshold must be a finite number >= 0, got {self.beam_threshold}")
        for name in ("lm_weight", "word_score", "token_min_logp", "sil_score"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise S3LError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
        if self.smearing is not None and self.smearing not in SMEARING:
            raise S3LError(f"--smearing must be one of {', '.join(SMEARING)}, got {self.smearing!r}")
        if self.unk_score is not None and (math.isnan(self.unk_score) or self.unk_score == math.inf):
            raise S3LError(f"--unk-score must be a number or -inf, got {self.unk_score}")


_OPTIONAL = ("beam_threshold", "beam_size_token", "token_min_logp", "unk_score", "sil_score", "smearing", "log_add")
SMEARING = ("max", "logadd", "none")
# beam: pyctcdecode's own defaults (beam_prune_logp -10, token_min_logp -5, unk_score_offset -10), plus at most 8
# symbols per frame: on blank-heavy, otherwise flat posteriors every symbol passes -5 and beam 50 ran 4x slower
# than on peaky ones of the same length (recipes/benchmarks/bench_decode.py: RTF 0.142 vs 0.034; with 8 symbols
# 0.028 vs 0.028, and WER 1.1 instead of 4.6 on the peaky set). lexicon: fairseq's infer.py for
# its wav2letter decoder (--beam-threshold 25, --unk-weight -inf, --sil-weight 0; its --beam-size-token 100 exceeds
# a letter vocabulary, i.e. all symbols; flashlight's cost hardly depends on the posteriors).
_DEFAULTS: dict[str, dict] = {
    "greedy": {},
    "beam": {"beam_threshold": 10.0, "beam_size_token": 8, "token_min_logp": -5.0, "unk_score": -10.0},
    "lexicon": {"beam_threshold": 25.0, "beam_size_token": None, "unk_score": -math.inf, "sil_score": 0.0,
                "smearing": "max", "log_add": False},
}


def _owner(option: str) -> str:
    return next(d for d, own in _DEFAULTS.items() if option in own)


def choose(name: str | None, options: SearchOptions, lm: Path | None = None,
           lexicon: Path | None = None) -> tuple[str, SearchOptions]:
    """The decoder to build (``None``: ``lexicon`` with an LM, ``greedy`` without) and its options with that
    decoder's defaults filled in; refuses combinations that do not fit, before any work is done."""
    if name is None:
        name = "lexicon" if lm is not None else "greedy"
    if name not in DECODERS:
        raise S3LError(f"--decoder must be one of {', '.join(DECODERS)}, got {name!r}")
    if lexicon is not None and name != "lexicon":
        raise S3LError(f"--lexicon is used by --decoder lexicon only, not {name}")
    if name == "greedy" and lm is not None:
        raise S3LError("--decoder greedy does not use --lm (use --decoder beam or lexicon)")
    if name == "lexicon" and lm is None:
        raise S3LError("--decoder lexicon needs a language model (--lm)")
    return name, options.resolved(name)


def make_decoder(name: str | None, vocab: Sequence[str], options: SearchOptions, lm: Path | None = None,
                 unigrams: Path | None = None, lexicon: Path | None = None) -> Decoder:
    """Build decoder ``name`` (see :func:`choose`) for ``vocab``. ``lexicon`` (a wav2letter lexicon file) is for
    ``lexicon`` only; without it that decoder spells the words of ``unigrams`` or of the LM's 1-grams."""
    from s3l.vocab import check_vocab

    check_vocab(vocab)
    name, options = choose(name, options, lm, lexicon)
    if name == "greedy":
        return GreedyDecoder(vocab)
    if name == "beam":
        from s3l.decode.ctc import BeamDecoder, lm_unigrams

        return BeamDecoder(vocab, lm, lm_unigrams(lm, unigrams) if lm is not None else None, options)
    from s3l.decode.lexicon import LexiconDecoder

    assert lm is not None
    return LexiconDecoder(vocab, lm, options, lexicon=lexicon, unigrams=unigrams)


class GreedyDecoder:
    """Best path: argmax per frame, repeats collapsed, blanks dropped, ``|`` ends a word."""

    name = "greedy"
    uses_lm = False

    def __init__(self, vocab: Sequence[str]) -> None:
        self.vocab = list(vocab)

    def decode(self, emission: np.ndarray) -> Hypothesis:
        return path_hypothesis(emission.argmax(axis=1) if len(emission) else np.zeros(0, np.int64), self.vocab)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        raise S3LError("the greedy decoder has no LM weight to tune (use --decoder beam or lexicon with --lm)")

    def describe(self) -> dict:
        return {"lm": None, "lm_weight": None, "word_score": None}

    def close(self) -> None:
        pass


def path_hypothesis(path: np.ndarray, vocab: Sequence[str]) -> Hypothesis:
    """Words of a CTC path ``(T,)`` of symbol indices, each with the first and last frame of its letters.

    Repeats collapse unless a blank separates them; ``|`` (and the end of the path) closes a word.
    """
    sep = list(vocab).index(WORD_SEP)
    words: list[str] = []
    spans: list[tuple[int, int]] = []
    letters: list[str] = []
    first = last = -1
    prev = -1
    for t in np.flatnonzero(path != 0).tolist():  # blanks never start, continue or end a word
        s = int(path[t])
        if s == sep:
            if letters:
                words.append("".join(letters).upper())
                spans.append((first, last))
                letters = []
        else:
            if not letters:
                first = t
            if s != prev or path[t - 1] == 0:
                letters.append(vocab[s])
            last = t
        prev = s
    if letters:
        words.append("".join(letters).upper())
        spans.append((first, last))
    return Hypothesis(tuple(words), tuple(spans))
