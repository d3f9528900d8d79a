"""CTC decoding of emission matrices: greedy, and beam search with a KenLM model through pyctcdecode.

An emission is a ``(T, V)`` array of log-probabilities over the model vocabulary: ``vocab[0] == "<blank>"``, the
other symbols those of ``dict.ltr.txt`` with ``|`` the word boundary. Both decoders return upper-case words
separated by single spaces.

LM scores follow pyctcdecode: a word adds ``lm_weight * ln p_LM(word | history) + word_score`` to the CTC log
score (``alpha`` and ``beta`` there); ``</s>`` is scored at the end of the utterance. These are the "LM weight"
and "word insertion score" of wav2vec 2.0 / HuBERT decoding, with the LM log-probability in natural log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3l.errors import S3LError

BLANK = "<blank>"
WORD_SEP = "|"


def check_vocab(vocab: Sequence[str], source: str | Path = "model") -> None:
    """The model vocabulary must start with the CTC blank and contain the word boundary ``|``."""
    if not vocab or vocab[0] != BLANK:
        raise S3LError(f"{source}: vocabulary must start with {BLANK!r} (the CTC blank), got {list(vocab[:3])}")
    if WORD_SEP not in vocab:
        raise S3LError(f"{source}: vocabulary has no word boundary symbol {WORD_SEP!r}")


def greedy(emission: np.ndarray, vocab: Sequence[str]) -> str:
    """Best path: argmax per frame, collapse repeats, drop blanks, ``|`` -> space.  ``emission``: (T, V)."""
    if emission.shape[0] == 0:
        return ""
    best = emission.argmax(axis=1)  # (T,)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    symbols = [vocab[i] for i in best[keep] if i != 0]
    return _words("".join(" " if s == WORD_SEP else s for s in symbols))


def _words(text: str) -> str:
    return " ".join(text.upper().split())


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


@dataclass(frozen=True)
class BeamOptions:
    beam: int = 50  # beams kept after each frame
    lm_weight: float = 2.0  # alpha: weight of the LM log-probability (natural log)
    word_score: float = -1.0  # beta: added per word
    beam_prune_logp: float = -10.0  # drop beams this far below the best
    token_min_logp: float = -5.0  # skip symbols below this log-probability unless they are the frame's argmax
    unk_score: float = -10.0  # pyctcdecode's unk_score_offset: added (log10 units, before the LM weight) per
    # word outside the LM's unigrams, and per unfinished word that no unigram starts with


class BeamDecoder:
    """pyctcdecode beam search with a KenLM model (``lm=None``: beam search without LM)."""

    def __init__(self, vocab: Sequence[str], lm: str | Path | None, unigrams: Sequence[str] | None,
                 options: BeamOptions) -> None:
        from pyctcdecode import Alphabet, BeamSearchDecoderCTC

        from s3l.lm import load_kenlm

        check_vocab(vocab)
        if options.beam < 1:
            raise S3LError(f"--beam must be at least 1, got {options.beam}")
        logging.getLogger("pyctcdecode.language_model").addFilter(_SmallVocabFilter())
        self.vocab = list(vocab)
        self.options = options
        alphabet = Alphabet.build_alphabet(pyctcdecode_labels(vocab))
        language_model = None
        if lm is not None:
            language_model = _language_model(load_kenlm(lm), list(unigrams or []), float(options.lm_weight),
                                             float(options.word_score), float(options.unk_score))
        self._decoder = BeamSearchDecoderCTC(alphabet, language_model)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        self._decoder.reset_params(alpha=float(lm_weight), beta=float(word_score))

    def __call__(self, emission: np.ndarray) -> str:
        """Best hypothesis for one ``(T, V)`` emission."""
        if emission.shape[0] == 0:
            return ""
        text = self._decoder.decode(
            np.ascontiguousarray(emission, dtype=np.float32),
            beam_width=self.options.beam,
            beam_prune_logp=self.options.beam_prune_logp,
            token_min_logp=self.options.token_min_logp,
        )
        return _words(text)

    def close(self) -> None:
        self._decoder.cleanup()
