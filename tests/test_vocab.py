"""The CTC vocabulary rules (s3l/vocab.py): one check for models, decoders and fine-tuning data."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3l.errors import S3LError
from s3l.vocab import BLANK, check_vocab, letter_vocab


def test_check_vocab_rules() -> None:
    assert check_vocab((BLANK, "|", "A")) == [BLANK, "|", "A"]
    assert check_vocab([BLANK, "A"], words=False) == [BLANK, "A"]  # a model need not spell words
    for vocab, words, message in [
        (["A", BLANK, "|"], True, r"m: a CTC vocabulary starts with '<blank>' \(the blank\), got \['A', "),
        ([], True, r"m: a CTC vocabulary starts with '<blank>'"),
        ([BLANK], False, r"m: vocabulary has no symbol besides '<blank>'"),
        ([BLANK, "|", "A", "A"], True, r"m: vocabulary has the symbol 'A' twice"),
        ([BLANK, "A", "B"], True, r"m: vocabulary has no word boundary symbol '\|'"),
    ]:
        with pytest.raises(S3LError, match=message):
            check_vocab(vocab, "m", words=words)


def test_letter_vocab_reads_dict_ltr(tmp_path: Path) -> None:
    (tmp_path / "dict.ltr.txt").write_text("| 10\nE 7\nT 3\n")
    assert letter_vocab(tmp_path) == [BLANK, "|", "E", "T"]
    (tmp_path / "dict.ltr.txt").write_text("<blank> 1\n| 10\n")
    with pytest.raises(S3LError, match=r"dict.ltr.txt: lists '<blank>', which s3l adds itself"):
        letter_vocab(tmp_path)
    (tmp_path / "dict.ltr.txt").write_text("E 7\nT 3\n")
    with pytest.raises(S3LError, match=r"dict.ltr.txt: vocabulary has no word boundary symbol"):
        letter_vocab(tmp_path)
