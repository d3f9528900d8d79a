"""The output vocabulary of a CTC model, in one place: its two special symbols, how it is built from a data
directory's ``dict.ltr.txt``, and the rules it follows.

A vocabulary is ``["<blank>", *symbols]``: the CTC blank at index 0 (s3l adds it; the converters move fairseq's and
Hugging Face's blank there), then the symbols of ``dict.ltr.txt`` (:func:`s3l.manifest.write_dict` writes it, in
the order of :func:`s3l.manifest.read_dict`). ``|`` ends a word (``.ltr``: ``H E L L O | W O R L D |``); a model
without it can be trained and run, but not scored or decoded in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from s3l.errors import S3LError

BLANK = "<blank>"
WORD_SEP = "|"


def check_vocab(vocab: Sequence[str], source: str | Path = "model", *, words: bool = True) -> list[str]:
    """``vocab`` as a list once it starts with the blank, has a further symbol, none twice and (``words``) the word
    boundary ``|``; else an error naming ``source``."""
    vocab = list(vocab)
    if not vocab or vocab[0] != BLANK:
        raise S3LError(f"{source}: a CTC vocabulary starts with {BLANK!r} (the blank), got {vocab[:3]}")
    if len(vocab) < 2:
        raise S3LError(f"{source}: vocabulary has no symbol besides {BLANK!r}")
    if len(set(vocab)) != len(vocab):
        dup = next(s for s in vocab if vocab.count(s) > 1)
        raise S3LError(f"{source}: vocabulary has the symbol {dup!r} twice")
    if words and WORD_SEP not in vocab:
        raise S3LError(f"{source}: vocabulary has no word boundary symbol {WORD_SEP!r}")
    return vocab


def letter_vocab(data: str | Path) -> list[str]:
    """``["<blank>", *symbols of DATA/dict.ltr.txt]``; the dictionary needs the word boundary ``|``."""
    from s3l.manifest import read_dict

    path = Path(data) / "dict.ltr.txt"
    symbols = read_dict(path)
    if BLANK in symbols:
        raise S3LError(f"{path}: lists {BLANK!r}, which s3l adds itself as the CTC blank (index 0)")
    return check_vocab([BLANK, *symbols], path)
