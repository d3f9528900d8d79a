"""``s3l prep librilight`` on a generated Libri-light fine-tuning tree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3l.errors import S3LError
from s3l.prep.librilight import LibriLightConfig, prepare_librilight

# (directory under librispeech_finetuning, speaker, chapter, frames, transcript); chapters are distinct.
UTTS = [
    ("1h/0/clean", "103", "1240", 1600, "CHAPTER ONE"),
    ("1h/0/other", "1040", "133433", 2400, "THE DOG BARKED"),
    ("1h/1/clean", "1069", "133699", 1700, "A"),
    ("1h/2/clean", "1088", "134315", 1800, "B"),
    ("1h/3/other", "1098", "133695", 1900, "C"),
    ("1h/4/clean", "1116", "132847", 2000, "D"),
    ("1h/5/other", "118", "47824", 2100, "E"),
    ("9h/clean", "1183", "124566", 2200, "NINE HOURS"),
]


def rel(entry: tuple) -> str:
    d, spk, ch, _, _ = entry
    return f"{d}/{spk}/{ch}/{spk}-{ch}-0000.flac"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    base = tmp_path / "data" / "librispeech_finetuning"
    for fold in [f"1h/{k}" for k in range(6)] + ["9h"]:
        for sub in ("clean", "other"):
            (base / fold / sub).mkdir(parents=True)
    for entry in UTTS:
        d, spk, ch, frames, text = entry
        f = base / rel(entry)
        f.parent.mkdir(parents=True, exist_ok=True)
        sf.write(f, 0.1 * np.sin(np.arange(frames) / 7.0), 16_000)
        (f.parent / f"{spk}-{ch}.trans.txt").write_text(f"{spk}-{ch}-0000 {text}\n")
    (base / "phones").mkdir()  # the real archive also has phone alignments: ignored
    return base


def tsv_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.parametrize("given", ["dir", "parent"])
def test_three_splits_exact(tree: Path, tmp_path: Path, given: str) -> None:
    out = tmp_path / "out"
    prepare_librilight(LibriLightConfig(root=tree if given == "dir" else tree.parent, out=out))
    head = str(tree.resolve())

    def expected(entries: list[tuple]) -> list[str]:
        ordered = sorted(entries, key=rel)
        return [head, *(f"{rel(e)}\t{e[3]}" for e in ordered)]

    assert tsv_lines(out / "train-10min.tsv") == expected(UTTS[:2])
    assert tsv_lines(out / "train-1h.tsv") == expected(UTTS[:7])
    assert tsv_lines(out / "train-10h.tsv") == expected(UTTS)
    assert tsv_lines(out / "train-10min.wrd") == ["CHAPTER ONE", "THE DOG BARKED"]
    assert tsv_lines(out / "train-10min.ltr") == ["C H A P T E R | O N E |", "T H E | D O G | B A R K E D |"]
    assert tsv_lines(out / "train-10h.wrd")[-1] == "NINE HOURS"
    # dict.ltr.txt counts each utterance once although it sits in several splits: 'E' occurs
    # CHAPTER ONE (2) + THE (1) + BARKED (1) + E (1) + NINE (1) = 6.
    counts = dict(line.split() for line in tsv_lines(out / "dict.ltr.txt"))
    assert counts["E"] == "6" and counts["|"] == str(2 + 3 + 5 + 2)
    report = json.loads((out / "prep.json").read_text())
    assert {k: v["utterances"] for k, v in report["splits"].items()} == {
        "train-10min": 2, "train-1h": 7, "train-10h": 8}


def test_incomplete_tree_is_an_error(tree: Path, tmp_path: Path) -> None:
    shutil.rmtree(tree / "1h" / "4")
    with pytest.raises(S3LError, match=r"1h/4/clean: directory not found; the Libri-light tree is incomplete"):
        prepare_librilight(LibriLightConfig(root=tree, out=tmp_path / "out"))
    with pytest.raises(S3LError, match="not a Libri-light fine-tuning tree"):
        prepare_librilight(LibriLightConfig(root=tree / "1h" / "0", out=tmp_path / "out"))


def test_skipped_item_reported_in_every_split_holding_it(tree: Path, tmp_path: Path) -> None:
    bad = tree / rel(UTTS[1])
    sf.write(bad, np.zeros((1000, 2)), 16_000)  # stereo
    out = tmp_path / "out"
    with pytest.raises(S3LError, match=rf"^{bad}: 2 channels"):
        prepare_librilight(LibriLightConfig(root=tree, out=out))
    result = prepare_librilight(LibriLightConfig(root=tree, out=out, skip_bad=True))
    for split in ("train-10min", "train-1h", "train-10h"):
        assert tsv_lines(out / f"skipped-{split}.tsv")[1].startswith(f"{bad}\t2 channels")
    assert [s.utterances for s in result.splits] == [1, 6, 7]
    assert len(result.skipped) == 1
