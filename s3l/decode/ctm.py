"""Word timings: ``{split}.ctm``, written by ``s3l decode --ctm`` (NIST CTM, format version 1).

One line per hypothesis word, utterances in tsv order and words in time order::

    utt-id 1 start duration WORD

``utt-id`` is the tsv path without its extension, the channel is always 1, ``start`` and ``duration`` are seconds
with 3 decimals, taken from the CTC path of the chosen hypothesis: a word starts at the first frame of its letters
and lasts to the end of its last letter's last frame, i.e. ``start = first * F`` and
``duration = (last - first + 1) * F`` with ``F`` the model's frame length (20 ms for the wav2vec 2.0 / HuBERT
feature encoder). Blanks and ``|`` around a word are not part of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from s3l.decode.decoder import Hypothesis
from s3l.errors import S3LError, where
from s3l.fileio import atomic_write_lines


@dataclass(frozen=True)
class CtmWord:
    utt: str
    channel: int
    start: float  # seconds
    duration: float  # seconds
    word: str


def ctm_lines(utt: str, hyp: Hypothesis, frame_seconds: float) -> list[str]:
    return [f"{utt} 1 {first * frame_seconds:.3f} {(last - first + 1) * frame_seconds:.3f} {word}"
            for word, (first, last) in zip(hyp.words, hyp.spans)]


def write_ctm(path: str | Path, utterances: Iterable[tuple[str, Hypothesis]], frame_seconds: float) -> None:
    atomic_write_lines(path, [line for utt, hyp in utterances for line in ctm_lines(utt, hyp, frame_seconds)])


def read_ctm(path: str | Path) -> list[CtmWord]:
    """The words of a CTM file (5 fields per line; a 6th, confidence, is allowed and ignored)."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: CTM file not found")
    words = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or line.startswith(";;"):
            continue
        try:
            if len(fields) not in (5, 6):
                raise ValueError
            w = CtmWord(fields[0], int(fields[1]), float(fields[2]), float(fields[3]), fields[4])
            if not (math.isfinite(w.start) and math.isfinite(w.duration)) or w.start < 0 or w.duration < 0:
                raise ValueError
        except ValueError:
            raise S3LError(f"{where(path, lineno)}: expected 'utt-id channel start duration WORD'") from None
        words.append(w)
    return words
