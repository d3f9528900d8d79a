"""``s3l prep timit`` on generated TIMIT-like trees (NIST SPHERE audio, .PHN/.TXT/.WRD, mixed case)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3l.errors import S3LError
from s3l.manifest import load_split
from s3l.prep.common import Segment, frame_labels
from s3l.prep.timit import (
    CORE_TEST_SPEAKERS,
    DEV_SPEAKERS,
    FOLD_61_TO_39,
    TimitConfig,
    fold_phones,
    prepare_timit,
)

DEFAULT_PHN = "0 200 h#\n200 {n} aa\n"


def utt(spk: Path, name: str, frames: int, phn: str | None = None, text: str = "0 0 Hello world.",
        sr: int = 16_000) -> Path:
    """Write NAME.WAV (NIST SPHERE), .PHN, .TXT and .WRD; the extension case follows ``name``'s case."""
    spk.mkdir(parents=True, exist_ok=True)
    up = name.isupper()
    ext = (lambda e: e.upper()) if up else (lambda e: e.lower())
    wav = spk / f"{name}.{ext('wav')}"
    sf.write(wav, 0.2 * np.sin(np.arange(frames) / 5.0), sr, format="NIST", subtype="PCM_16")
    (spk / f"{name}.{ext('phn')}").write_text(phn if phn is not None else DEFAULT_PHN.format(n=frames))
    (spk / f"{name}.{ext('txt')}").write_text(text + "\n")
    (spk / f"{name}.{ext('wrd')}").write_text("0 100 hello\n100 200 world\n")
    return wav


def sa(spk: Path) -> None:
    """An SA sentence; it is garbage, so reading it would fail: it must be excluded, not read."""
    (spk / "SA1.WAV").write_bytes(b"not audio")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A tree lacking the standard dev/test speakers (fallback split)."""
    root = tmp_path / "timit" / "TIMIT"
    f = root / "TRAIN" / "DR1" / "FCJF0"
    utt(f, "SI1027", 1130, "0 200 h#\n200 330 ao\n330 420 q\n420 480 dcl\n480 600 zh\n600 1000 h#\n",
        "0 1130 She had your dark suit in greasy wash-water all year.")
    utt(f, "SX37", 500, "0 100 h#\n100 200 bcl\n200 280 b\n280 500 ix\n", "0 500 Don't ask me.", sr=8000)
    sa(f)
    m = root / "train" / "dr2" / "mdac0"  # a lower-case copy
    utt(m, "sx91", 800, "0 100 pau\n100 500 q\n500 800 en\n", "0 800 Even then.")
    utt(root / "TRAIN" / "DR3" / "MRCZ0", "SX1", 700)
    utt(root / "TEST" / "DR1" / "FAKS0", "SX13", 640)
    utt(root / "TEST" / "DR2" / "MXXX0", "SI10", 960)
    sa(root / "TEST" / "DR2" / "MXXX0")
    return root


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines()


def test_fold_61_to_39() -> None:
    assert len(FOLD_61_TO_39) == 60 and len(set(FOLD_61_TO_39.values())) == 39
    segs = [Segment(0, 10, "h#"), Segment(10, 20, "q"), Segment(20, 30, "bcl"), Segment(30, 40, "b"),
            Segment(40, 50, "q"), Segment(50, 60, "ix"), Segment(60, 70, "ax-h"), Segment(70, 80, "zh"),
            Segment(80, 90, "axr"), Segment(90, 100, "eng"), Segment(100, 110, "nx"), Segment(110, 120, "epi")]
    assert [s.label for s in fold_phones(segs)] == ["sil", "sil", "sil", "b", "b", "ih", "ah", "sh", "er",
                                                    "ng", "n", "sil"]
    leading = [Segment(0, 10, "q"), Segment(10, 20, "q"), Segment(20, 30, "ao")]
    assert [s.label for s in fold_phones(leading)] == ["aa", "aa", "aa"]
    assert [(s.start, s.end) for s in fold_phones(segs)] == [(s.start, s.end) for s in segs]


def test_frame_labels_at_boundaries() -> None:
    segs = [Segment(0, 240, "sil"), Segment(240, 400, "b"), Segment(400, 560, "ih")]
    # centres 80, 240 (= start of b), 400 (= start of ih), 560 and 720 (past the last segment)
    assert frame_labels(segs, 5, 16_000) == ["sil", "b", "ih", "ih", "ih"]
    assert frame_labels(segs, 2, 16_000) == ["sil", "b"]
    # 8 kHz offsets: centres 80, 240, 400 at 16 kHz are 40, 120, 200 at 8 kHz
    assert frame_labels([Segment(0, 120, "sil"), Segment(120, 200, "b")], 3, 8000) == ["sil", "b", "b"]
    assert frame_labels([Segment(0, 119, "sil"), Segment(121, 200, "b")], 2, 8000) == ["sil", "sil"]


def test_fallback_split_exact(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare_timit(TimitConfig(root=small.parent, out=out))  # the parent of TIMIT/ works too
    assert len(result.warnings) == 1 and "lacks 73 of the 74 standard" in result.warnings[0]
    root = str(small.resolve())
    # MRCZ0 has the smallest SHA-1 of the three TRAIN speakers, so it is the (10%, at least 1) dev set.
    assert lines(out / "train.tsv") == [root, "TRAIN/DR1/FCJF0/SI1027.WAV\t1130", "TRAIN/DR1/FCJF0/SX37.WAV\t1000",
                                        "train/dr2/mdac0/sx91.wav\t800"]
    assert lines(out / "dev.tsv") == [root, "TRAIN/DR3/MRCZ0/SX1.WAV\t700"]
    assert lines(out / "test.tsv") == [root, "TEST/DR1/FAKS0/SX13.WAV\t640", "TEST/DR2/MXXX0/SI10.WAV\t960"]
    assert lines(out / "train.wrd") == ["SHE HAD YOUR DARK SUIT IN GREASY WASH WATER ALL YEAR", "DON'T ASK ME",
                                        "EVEN THEN"]
    assert lines(out / "train.ltr")[2] == "E V E N | T H E N |"
    assert lines(out / "train.phn") == [
        "sil aa aa sh sil sil sil",  # 1130 // 160 = 7 frames; q takes the preceding aa; frame 6 is past the end
        "sil sil b ih ih ih",  # 8 kHz audio: 500 frames = 1000 samples at 16 kHz, offsets scaled
        "sil sil sil n n",  # q after pau -> sil
    ]
    assert lines(out / "test.phn") == ["sil aa aa aa", "sil aa aa aa aa aa"]
    assert load_split(out, "train", ["wrd", "ltr", "phn"]).manifest.sizes == (1130, 1000, 800)
    counts = dict(line.split() for line in lines(out / "dict.phn.txt"))
    assert counts == {"sil": "12", "aa": "13", "ih": "3", "n": "2", "b": "1", "sh": "1"}
    assert (out / "dict.ltr.txt").is_file()


def test_standard_split(tmp_path: Path) -> None:
    root = tmp_path / "TIMIT"
    for i, spk in enumerate(sorted(DEV_SPEAKERS | CORE_TEST_SPEAKERS | {"MZZZ0"})):
        d = root / "TEST" / f"DR{i % 8 + 1}" / spk
        utt(d, "SX100", 480)
        sa(d)
    utt(root / "TRAIN" / "DR1" / "FCJF0", "SI1027", 480)
    utt(root / "TRAIN" / "DR5" / "MRCZ0", "SX1", 480)
    out = tmp_path / "out"
    result = prepare_timit(TimitConfig(root=root, out=out))
    assert result.warnings == ()
    speakers = {s: {line.split("/")[2] for line in lines(out / f"{s}.tsv")[1:]} for s in ("train", "dev", "test")}
    assert speakers == {"train": {"FCJF0", "MRCZ0"}, "dev": set(DEV_SPEAKERS), "test": set(CORE_TEST_SPEAKERS)}
    assert [s.utterances for s in result.splits] == [2, 50, 24]


def test_speaker_lists() -> None:
    assert len(DEV_SPEAKERS) == 50 and len(CORE_TEST_SPEAKERS) == 24 and not DEV_SPEAKERS & CORE_TEST_SPEAKERS
    # the core test set: two men and one woman from each of the 8 dialect regions
    assert sum(s.startswith("F") for s in CORE_TEST_SPEAKERS) == 8


def bad(root: Path, kind: str) -> tuple[str, str]:
    d = root / "TRAIN" / "DR1" / "FCJF0"
    if kind == "missing phn":
        (d / "SX37.PHN").unlink()
        return str(d / "SX37.WAV"), "missing phone alignment"
    if kind == "missing txt":
        (d / "SX37.TXT").unlink()
        return str(d / "SX37.WAV"), "missing transcript"
    if kind == "bad phn line":
        (d / "SX37.PHN").write_text("0 100 h#\n100 x200 b\n")
        return f"{d / 'SX37.PHN'}:2", "expected 'START END PHONE'"
    if kind == "unknown phone":
        (d / "SX37.PHN").write_text("0 100 h#\n100 200 xx\n")
        return f"{d / 'SX37.PHN'}:2", "not one of the 61 TIMIT phones"
    if kind == "phn past end":
        (d / "SX37.PHN").write_text("0 100 h#\n100 700 b\n")  # 500 frames at 8 kHz; slack is 80
        return str(d / "SX37.WAV"), "alignment and audio do not match"
    if kind == "unreadable":
        (d / "SX37.WAV").write_bytes(b"NIST_1A\n garbage")
        return str(d / "SX37.WAV"), "unreadable audio"
    if kind == "too short":
        utt(d, "SX37", 390)
        return str(d / "SX37.WAV"), "shorter than"
    raise AssertionError(kind)


KINDS = ["missing phn", "missing txt", "bad phn line", "unknown phone", "phn past end", "unreadable", "too short"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input(small: Path, tmp_path: Path, kind: str) -> None:
    file, reason = bad(small, kind)
    with pytest.raises(S3LError) as e:
        prepare_timit(TimitConfig(root=small, out=tmp_path / "out"))
    assert str(e.value).startswith(f"{file}: ") and reason in str(e.value) and "\n" not in str(e.value)
    result = prepare_timit(TimitConfig(root=small, out=tmp_path / "out", skip_bad=True))
    report = lines(tmp_path / "out" / "skipped-train.tsv")
    assert len(report) == 2 and report[1].startswith(f"{file}\t") and reason in report[1]
    assert [s.utterances for s in result.splits] == [2, 1, 2]
    assert "SX37" not in (tmp_path / "out" / "train.tsv").read_text()


def test_not_a_timit_tree(tmp_path: Path) -> None:
    (tmp_path / "x" / "TRAIN").mkdir(parents=True)
    with pytest.raises(S3LError, match="TIMIT tree has no TEST directory"):
        prepare_timit(TimitConfig(root=tmp_path / "x", out=tmp_path / "out"))
    (tmp_path / "y").mkdir()
    with pytest.raises(S3LError, match="not a TIMIT tree"):
        prepare_timit(TimitConfig(root=tmp_path / "y", out=tmp_path / "out"))
