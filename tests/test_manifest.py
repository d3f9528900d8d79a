"""Manifests: round trip, validation errors naming file and line, text normalisation, dictionaries."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3l.errors import S3LError
from s3l.manifest import (
    letter_counts,
    letters,
    load_split,
    normalize_transcript,
    phone_frames,
    read_dict,
    read_label_lines,
    read_manifest,
    write_dict,
    write_split,
)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """An audio root with two files and a written split 'train' (tsv/wrd/ltr/phn) in out/."""
    root = tmp_path / "audio"
    (root / "s").mkdir(parents=True)
    sf.write(root / "s" / "a.wav", np.zeros(800, dtype=np.float32) + 0.1, 16_000)
    sf.write(root / "b.flac", np.zeros(1000, dtype=np.float32) + 0.1, 8_000)  # 2000 at 16 kHz
    out = tmp_path / "out"
    write_split(out, "train", root, [("s/a.wav", 800), ("b.flac", 2000)], words=["HELLO WORLD", "DON'T"],
                phones=[["sil"] * 5, ["a"] * 6 + ["b"] * 6])
    return root, out


def test_round_trip(data: tuple[Path, Path]) -> None:
    root, out = data
    assert (out / "train.tsv").read_text() == f"{root.resolve()}\ns/a.wav\t800\nb.flac\t2000\n"
    assert (out / "train.ltr").read_text() == "H E L L O | W O R L D |\nD O N ' T |\n"
    split = load_split(out, "train", ["wrd", "ltr", "phn"])
    m = split.manifest
    assert m.root == root.resolve() and m.paths == ("s/a.wav", "b.flac") and m.sizes == (800, 2000)
    assert split.labels["wrd"] == ["HELLO WORLD", "DON'T"]
    assert split.labels["phn"][1] == "a a a a a a b b b b b b"
    assert m.utt_id(0) == "s/a" and m.line_of(1) == 3
    assert m.load(1).shape == (2000,) and m.load(1).dtype == np.float32


def test_label_count_mismatch_names_both_files(data: tuple[Path, Path]) -> None:
    _, out = data
    (out / "train.wrd").write_text("HELLO WORLD\nDON'T\nEXTRA\n")
    with pytest.raises(S3LError) as e:
        load_split(out, "train", ["wrd"])
    msg = str(e.value)
    assert msg.startswith(f"{out / 'train.wrd'}: 3 lines but {out / 'train.tsv'} lists 2 utterances")
    (out / "train.ltr").unlink()
    with pytest.raises(S3LError, match=r"train.ltr: label file not found \(expected beside .*train.tsv\)"):
        load_split(out, "train", ["ltr"])


def test_phone_frames_checked(data: tuple[Path, Path]) -> None:
    _, out = data
    (out / "train.phn").write_text("sil sil sil sil sil\nsil\n")
    with pytest.raises(S3LError, match=rf"^{out / 'train.phn'}:2: 1 phone frames, expected 12 for 2000 samples"):
        load_split(out, "train", ["phn"])
    assert phone_frames(159) == 0 and phone_frames(160) == 1 and phone_frames(2000) == 12
    with pytest.raises(ValueError):
        write_split(out, "x", out, [("a.wav", 800)], phones=[["sil"] * 4])


@pytest.mark.parametrize(
    "body, line, pattern",
    [
        ("a.wav 800\n", 2, "expected 'relative/path<TAB>num_samples'"),
        ("a.wav\t800\nb.wav\tmany\n", 3, "expected 'relative/path<TAB>num_samples'"),
        ("a.wav\t800\n\n", 3, "empty line"),
        ("a.wav\t0\n", 2, "num_samples must be positive"),
        ("a.wav\t800\textra\n", 2, "expected 'relative/path<TAB>num_samples'"),
    ],
)
def test_invalid_tsv_line(tmp_path: Path, body: str, line: int, pattern: str) -> None:
    tsv = tmp_path / "x.tsv"
    tsv.write_text(f"{tmp_path}\n{body}")
    with pytest.raises(S3LError, match=rf"^{tsv}:{line}: {pattern}"):
        read_manifest(tsv, check_files=False)


def test_manifest_file_errors(data: tuple[Path, Path], tmp_path: Path) -> None:
    root, out = data
    tsv = tmp_path / "m.tsv"
    tsv.write_text(f"{root}\ns/a.wav\t800\nmissing.wav\t900\n")
    with pytest.raises(S3LError, match=rf"^{tsv}:3: audio file {root / 'missing.wav'} not found"):
        read_manifest(tsv)
    assert len(read_manifest(tsv, check_files=False)) == 2
    tsv.write_text("\n")
    with pytest.raises(S3LError, match=rf"^{tsv}:1: expected the audio root"):
        read_manifest(tsv)
    tsv.write_text(f"{root}\n")
    with pytest.raises(S3LError, match="lists no audio"):
        read_manifest(tsv)
    tsv.write_bytes(f"{root}\n".encode() + b"\xff\xfe.wav\t800\n")
    with pytest.raises(S3LError, match=rf"^{tsv}:2: not valid UTF-8"):
        read_manifest(tsv)
    with pytest.raises(S3LError, match="manifest not found"):
        read_manifest(tmp_path / "none.tsv")
    with pytest.raises(S3LError, match=r"split 'dev' not found \(available: train\)"):
        load_split(out, "dev")
    with pytest.raises(S3LError, match="data directory not found"):
        load_split(tmp_path / "nowhere", "train")


def test_load_checks_length(data: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = data
    tsv = tmp_path / "m.tsv"
    tsv.write_text(f"{root}\ns/a.wav\t801\n")
    with pytest.raises(S3LError, match=rf"^{tsv}:2: .*a.wav: 800 samples at 16 kHz but the manifest says 801"):
        read_manifest(tsv).load(0)


def test_read_label_lines_direct(data: tuple[Path, Path]) -> None:
    _, out = data
    m = read_manifest(out / "train.tsv")
    assert read_label_lines(out / "train.wrd", m) == ["HELLO WORLD", "DON'T"]


def test_letters_like_fairseq() -> None:
    # fairseq examples/wav2vec/libri_labels.py: " ".join(list(words.replace(" ", "|"))) + " |"
    for words in ["HELLO WORLD", "A", "DON'T STOP", "I AM HERE"]:
        assert letters(words) == " ".join(list(words.replace(" ", "|"))) + " |"
    assert letters("HI YOU") == "H I | Y O U |"
    assert letter_counts(["H I | Y O U |"]) == Counter({"|": 2, "H": 1, "I": 1, "Y": 1, "O": 1, "U": 1})


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("  café   Noël ", "CAFE NOEL"),
        ("wash-water all year.", "WASH WATER ALL YEAR"),
        ("'Quoted' don't o'clock", "QUOTED DON'T O'CLOCK"),
        ("room 101 now", "ROOM NOW"),
        ("...", ""),
        ("HE'S A FINE BOY", "HE'S A FINE BOY"),
    ],
)
def test_normalize_transcript(raw: str, norm: str) -> None:
    assert normalize_transcript(raw) == norm


def test_dict_round_trip_and_errors(tmp_path: Path) -> None:
    d = tmp_path / "dict.ltr.txt"
    write_dict(d, Counter({"E": 5, "|": 7, "A": 5, "Z": 1}))
    assert d.read_text() == "| 7\nA 5\nE 5\nZ 1\n"  # most frequent first, ties by symbol
    assert read_dict(d) == ["|", "A", "E", "Z"]
    d.write_text("A 1\nB 2\nA 3\n")
    with pytest.raises(S3LError, match=rf"^{d}:3: duplicate symbol 'A'"):
        read_dict(d)
    d.write_text("A 1\nB 2 3 4\n")
    with pytest.raises(S3LError, match=rf"^{d}:2: expected 'SYMBOL COUNT'"):
        read_dict(d)
    d.write_text("A 1\n\n")
    with pytest.raises(S3LError, match=rf"^{d}:2: expected 'SYMBOL COUNT'"):
        read_dict(d)
    d.write_text("")
    with pytest.raises(S3LError, match="empty dictionary"):
        read_dict(d)
    with pytest.raises(S3LError, match="dictionary not found"):
        read_dict(tmp_path / "none.txt")
