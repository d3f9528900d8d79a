"""``s3l prep dir``: unlabeled audio folders (fairseq wav2vec_manifest.py style)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3l.errors import S3LError
from s3l.prep.folder import DirConfig, prepare_dir


def wav(path: Path, frames: int, sr: int = 16_000, channels: int = 1, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.1 * np.cos(np.arange(frames) / 3.0)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr, format=fmt)
    return path


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    d = tmp_path / "audio"
    wav(d / "b.wav", 1000)
    wav(d / "a" / "x.WAV", 4000, sr=8000)  # upper-case extension, 8 kHz -> 8000 samples
    wav(d / "a" / "y.flac", 4410, sr=44_100)  # -> 1600
    wav(d / "c.ogg", 2000, fmt="OGG")  # not in --ext
    (d / "notes.txt").write_text("not audio")
    (d / "._b.wav").write_bytes(b"\0\0")  # macOS resource fork: hidden, ignored
    wav(d / ".cache" / "z.wav", 1000)  # hidden directory, ignored
    return d


def lines(p: Path) -> list[str]:
    return p.read_text().splitlines()


def test_train_only_exact(audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare_dir(DirConfig(root=audio, out=out, valid_percent=0))
    assert lines(out / "train.tsv") == [str(audio.resolve()), "a/x.WAV\t8000", "a/y.flac\t1600", "b.wav\t1000"]
    assert not (out / "valid.tsv").exists() and not (out / "train.wrd").exists()
    assert not (out / "dict.ltr.txt").exists()
    assert [(s.name, s.utterances, s.samples) for s in result.splits] == [("train", 3, 10_600)]
    prepare_dir(DirConfig(root=audio, out=tmp_path / "ogg", exts=("ogg",), valid_percent=0))
    assert lines(tmp_path / "ogg" / "train.tsv")[1:] == ["c.ogg\t2000"]


def test_valid_split_deterministic(tmp_path: Path) -> None:
    d = tmp_path / "many"
    for i in range(20):
        wav(d / f"{i:02d}.wav", 500 + i)
    held = []
    for run, seed in enumerate([1, 1, 2]):
        out = tmp_path / f"out{run}"
        prepare_dir(DirConfig(root=d, out=out, valid_percent=0.1, seed=seed))
        train, valid = lines(out / "train.tsv")[1:], lines(out / "valid.tsv")[1:]
        assert len(valid) == 2 and len(train) == 18  # exactly round(0.1 * 20)
        assert sorted(train + valid) == [f"{i:02d}.wav\t{500 + i}" for i in range(20)]
        assert train == sorted(train) and valid == sorted(valid)
        held.append(valid)
    assert held[0] == held[1] != held[2]
    # a tiny fraction still holds out one file
    prepare_dir(DirConfig(root=d, out=tmp_path / "tiny", valid_percent=0.001))
    assert len(lines(tmp_path / "tiny" / "valid.tsv")) == 2


def test_valid_percent_checked(audio: Path, tmp_path: Path) -> None:
    with pytest.raises(S3LError, match=r"--valid-percent 5.0: expected a fraction in \[0, 1\)"):
        prepare_dir(DirConfig(root=audio, out=tmp_path / "o", valid_percent=5.0))
    one = tmp_path / "one"
    wav(one / "a.wav", 1000)
    with pytest.raises(S3LError, match="cannot give a training set"):
        prepare_dir(DirConfig(root=one, out=tmp_path / "o", valid_percent=0.5))
    with pytest.raises(S3LError, match="no audio files with extension .mp3"):
        prepare_dir(DirConfig(root=one, out=tmp_path / "o", exts=("mp3",)))
    with pytest.raises(S3LError, match="audio directory not found"):
        prepare_dir(DirConfig(root=tmp_path / "nope", out=tmp_path / "o"))


BAD = {
    "empty": (lambda p: wav(p, 0), "empty audio (0 samples)"),
    "stereo": (lambda p: wav(p, 1000, channels=2), "2 channels; s3l expects mono audio (pass --downmix"),
    "too short": (lambda p: wav(p, 199, sr=8000), "398 samples at 16 kHz is shorter than"),
    "unreadable": (lambda p: p.write_bytes(b"RIFF....WAVEfmt nonsense"), "unreadable audio"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_audio(audio: Path, tmp_path: Path, kind: str) -> None:
    make, reason = BAD[kind]
    f = audio / "a" / "bad.wav"
    make(f)
    out = tmp_path / "out"
    with pytest.raises(S3LError) as e:
        prepare_dir(DirConfig(root=audio, out=out, valid_percent=0))
    assert str(e.value) == f"{f}: {reason}" or (str(e.value).startswith(f"{f}: {reason}") and "\n" not in str(e.value))
    assert not (out / "train.tsv").exists()
    result = prepare_dir(DirConfig(root=audio, out=out, valid_percent=0, skip_bad=True))
    report = lines(out / "skipped-train.tsv")
    assert report[0] == "file\treason" and report[1].startswith(f"{f}\t{reason}") and len(report) == 2
    assert "bad.wav" not in (out / "train.tsv").read_text() and result.splits[0].utterances == 3
    summary = json.loads((out / "prep.json").read_text())
    assert summary["skipped"][0]["file"] == str(f) and summary["splits"]["train"]["skipped"] == 1


def test_downmix(audio: Path, tmp_path: Path) -> None:
    wav(audio / "s.wav", 1000, channels=2)
    prepare_dir(DirConfig(root=audio, out=tmp_path / "o", valid_percent=0, downmix=True))
    assert "s.wav\t1000" in lines(tmp_path / "o" / "train.tsv")


def test_tab_in_file_name(audio: Path, tmp_path: Path) -> None:
    f = wav(audio / "tab\there.wav", 1000)
    with pytest.raises(S3LError, match="file name contains a tab or newline"):
        prepare_dir(DirConfig(root=audio, out=tmp_path / "o", valid_percent=0))
    prepare_dir(DirConfig(root=audio, out=tmp_path / "o", valid_percent=0, skip_bad=True))
    row = lines(tmp_path / "o" / "skipped-train.tsv")[1].split("\t")
    assert row[0] == str(f).replace("\t", "\\t") and row[1].startswith("file name contains a tab")


def test_overwrite(audio: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    prepare_dir(DirConfig(root=audio, out=out, valid_percent=0))
    with pytest.raises(S3LError, match=r"train.tsv \(and 1 more\) already exists; pass --force"):
        prepare_dir(DirConfig(root=audio, out=out, valid_percent=0))
    prepare_dir(DirConfig(root=audio, out=out, valid_percent=0, force=True))
