"""s3l score against hand-counted substitutions, deletions and insertions, and its input errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from s3l.cli import app
from s3l.errors import S3LError
from s3l.score import ScoreConfig, run_score, score, score_files


def test_hand_counted_word_and_char_errors():
    refs = ["THE CAT SAT ON THE MAT", "A B C", "A B", "GO ON NOW"]
    hyps = ["THE CAT SAT IN THE HAT", "A C", "A X B", "GO IN NOW"]
    r = score(refs, hyps)
    # 1: ON->IN, MAT->HAT (2 S); 2: B deleted (1 D); 3: X inserted (1 I); 4: ON->IN (1 S). 14 reference words.
    assert (r.substitutions, r.deletions, r.insertions, r.ref_words) == (3, 1, 1, 14)
    assert r.wer == pytest.approx(100 * 5 / 14)
    # Characters (spaces count): 1: O->I, M->H (2 S); 2: "B " deleted (2 D); 3: "X " inserted (2 I); 4: O->I.
    # Reference characters: 22 + 5 + 3 + 9 = 39.
    assert (r.char_substitutions, r.char_deletions, r.char_insertions, r.ref_chars) == (3, 2, 2, 39)
    assert r.cer == pytest.approx(100 * 7 / 39)
    assert [(u.line, u.substitutions, u.deletions, u.insertions, u.ref_words) for u in r.utterances] == [
        (1, 2, 0, 0, 6), (2, 0, 1, 0, 3), (3, 0, 0, 1, 2), (4, 1, 0, 0, 3)]
    assert r.top_substitutions == [("ON", "IN", 2), ("MAT", "HAT", 1)]
    assert r.top_deletions == [("B", 1)] and r.top_insertions == [("X", 1)]
    assert r.sentence_errors == 4


def test_empty_hypothesis_and_whitespace():
    r = score(["A B", "C  D "], ["", "C D"])
    assert (r.substitutions, r.deletions, r.insertions, r.ref_words) == (0, 2, 0, 4)
    assert r.wer == 50.0
    assert score(["A B"], ["A B"]).wer == 0.0


def test_top_limits_and_orders_errors():
    refs = ["X"] * 3 + ["Y"] * 2 + ["Z"]
    hyps = ["A"] * 3 + ["B"] * 2 + ["C"]
    r = score(refs, hyps, top=2)
    assert r.top_substitutions == [("X", "A", 3), ("Y", "B", 2)]


def test_cli_writes_json(tmp_path):
    ref, hyp, out = tmp_path / "test.ref", tmp_path / "test.hyp", tmp_path / "wer.json"
    ref.write_text("A B C D\nX Y\n")
    hyp.write_text("A B D\nX Y Z\n")
    result = CliRunner().invoke(app, ["score", "--ref", str(ref), "--hyp", str(hyp), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "33.33" in result.output
    report = json.loads(out.read_text())
    assert report["wer"] == pytest.approx(100 * 2 / 6)
    assert (report["substitutions"], report["deletions"], report["insertions"], report["ref_words"]) == (0, 1, 1, 6)
    assert report["cer"] == pytest.approx(100 * 4 / 10)  # "C " deleted, " Z" inserted; 7 + 3 reference chars
    assert len(report["utterances"]) == 2 and report["utterances"][1]["insertions"] == 1
    assert report["top_errors"]["deletions"] == [["C", 1]] and report["top_errors"]["insertions"] == [["Z", 1]]
    again = CliRunner().invoke(app, ["score", "--ref", str(ref), "--hyp", str(hyp), "--json", str(out)])
    assert again.exit_code != 0 and "already exists" in str(again.exception)


def test_errors(tmp_path):
    ref, hyp = tmp_path / "a.ref", tmp_path / "a.hyp"
    ref.write_text("A B\nC D\nE\n")
    hyp.write_text("A B\nC D\n")
    with pytest.raises(S3LError, match=r"a.ref has 3 lines but .*a.hyp has 2"):
        score_files(ref, hyp)
    ref.write_text("A B\n   \nE\n")
    hyp.write_text("A B\nC D\nE\n")
    with pytest.raises(S3LError, match=r"a.ref:2: empty reference"):
        score_files(ref, hyp)
    ref.write_text("A B\nC D\nE\n")
    hyp.write_bytes(b"A B\nC D\nE \xe9\n")
    with pytest.raises(S3LError, match=r"a.hyp:3: not valid UTF-8"):
        score_files(ref, hyp)
    ref.write_bytes(b"\xff\n")
    with pytest.raises(S3LError, match=r"a.ref:1: not valid UTF-8"):
        score_files(ref, hyp)
    with pytest.raises(S3LError, match="not found"):
        score_files(tmp_path / "missing.ref", hyp)
    ref.write_text("")
    with pytest.raises(S3LError, match="empty reference file"):
        score_files(ref, hyp)
    with pytest.raises(S3LError, match="--top"):
        run_score(ScoreConfig(ref=ref, hyp=hyp, top=-1))
