"""``s3l prep librispeech`` on a generated LibriSpeech-like tree, with hand-computed expected manifests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3l.audio import read_audio
from s3l.errors import S3LError
from s3l.manifest import load_split, read_dict
from s3l.prep.librispeech import LibriSpeechConfig, prepare_librispeech


def write_audio(path: Path, frames: int, sr: int = 16_000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(frames) / sr
    wav = 0.3 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([wav] * channels, axis=1) if channels > 1 else wav, sr)
    return path


def chapter(root: Path, split: str, spk: str, ch: str, utts: dict[str, tuple[int, int, str]]) -> Path:
    """``utts``: number -> (frames, sample_rate, transcript)."""
    d = root / split / spk / ch
    for num, (frames, sr, _) in utts.items():
        write_audio(d / f"{spk}-{ch}-{num}.flac", frames, sr)
    lines = [f"{spk}-{ch}-{num} {text}" for num, (_, _, text) in utts.items()]
    (d / f"{spk}-{ch}.trans.txt").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    chapter(root, "dev-clean", "84", "121123", {"0000": (1600, 16_000, "GO DO YOU HEAR"),
                                               "0001": (801, 8_000, "BUT IN LESS THAN FIVE MINUTES")})
    chapter(root, "dev-clean", "174", "50561", {"0000": (2206, 22_050, "HE'S A FINE BOY")})
    chapter(root, "test-clean", "1089", "134686", {"0000": (4000, 16_000, "HE HOPED THERE WOULD BE STEW")})
    (root / "dev-clean" / "84" / "121123" / "._84-121123-0000.flac").write_bytes(b"\0")  # hidden: ignored
    return root


def cfg(root: Path, out: Path, **kw) -> LibriSpeechConfig:
    return LibriSpeechConfig(root=root, out=out, **kw)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_manifests_exact(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = prepare_librispeech(cfg(corpus, out))
    assert [s.name for s in result.splits] == ["dev-clean", "test-clean"]
    # 801 frames at 8 kHz -> ceil(801 * 2) = 1602; 2206 at 22.05 kHz -> ceil(1600.73) = 1601.
    assert lines(out / "dev-clean.tsv") == [
        str((corpus / "dev-clean").resolve()),
        "174/50561/174-50561-0000.flac\t1601",
        "84/121123/84-121123-0000.flac\t1600",
        "84/121123/84-121123-0001.flac\t1602",
    ]
    assert lines(out / "dev-clean.wrd") == ["HE'S A FINE BOY", "GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"]
    assert lines(out / "dev-clean.ltr")[:2] == ["H E ' S | A | F I N E | B O Y |", "G O | D O | Y O U | H E A R |"]
    assert lines(out / "test-clean.tsv")[1:] == ["1089/134686/1089-134686-0000.flac\t4000"]
    assert lines(out / "test-clean.wrd") == ["HE HOPED THERE WOULD BE STEW"]
    assert not (out / "dev-clean.phn").exists()
    # The stored lengths are what the loader (torchaudio resampling) actually returns.
    split = load_split(out, "dev-clean", ["wrd", "ltr"])
    for i in range(len(split.manifest)):
        assert len(read_audio(split.manifest.audio_path(i))) == split.manifest.sizes[i]
    # dict.ltr.txt: letter counts over every utterance, '|' once per word.
    texts = lines(out / "dev-clean.wrd") + lines(out / "test-clean.wrd")
    want = Counter(c for t in texts for c in t.replace(" ", ""))
    want["|"] = sum(len(t.split()) for t in texts)
    got = dict(line.split() for line in lines(out / "dict.ltr.txt"))
    assert {k: int(v) for k, v in got.items()} == dict(want)
    assert read_dict(out / "dict.ltr.txt") == [k for k, _ in sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))]
    assert (out / "prep.json").is_file() and not list(out.glob("skipped-*"))


def test_splits_option_and_root_forms(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "a"
    prepare_librispeech(cfg(corpus.parent, out, splits=("test-clean",)))  # the parent of LibriSpeech
    assert sorted(p.name for p in out.glob("*.tsv")) == ["test-clean.tsv"]
    out = tmp_path / "b"
    prepare_librispeech(cfg(corpus / "dev-clean", out))  # a split directory itself
    assert lines(out / "dev-clean.tsv")[0] == str((corpus / "dev-clean").resolve())
    with pytest.raises(S3LError, match="split 'train-other-500' not found .*dev-clean, test-clean"):
        prepare_librispeech(cfg(corpus, tmp_path / "c", splits=("train-other-500",)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(S3LError, match="no LibriSpeech split found"):
        prepare_librispeech(cfg(tmp_path / "empty", tmp_path / "d"))
    with pytest.raises(S3LError, match="LibriSpeech directory not found"):
        prepare_librispeech(cfg(tmp_path / "nope", tmp_path / "d"))


def test_overwrite_needs_force(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_librispeech(cfg(corpus, out))
    before = (out / "dev-clean.tsv").read_text()
    with pytest.raises(S3LError, match=r"already exists; pass --force"):
        prepare_librispeech(cfg(corpus, out))
    prepare_librispeech(cfg(corpus, out, force=True))
    assert (out / "dev-clean.tsv").read_text() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def bad(corpus: Path, kind: str) -> tuple[Path, str]:
    """Add one bad item to dev-clean; returns the file an error must name and a pattern of the reason."""
    d = corpus / "dev-clean" / "84" / "121123"
    trans = d / "84-121123.trans.txt"
    if kind == "missing transcript":
        return write_audio(d / "84-121123-0009.flac", 1600), "missing transcript"
    if kind == "transcript for missing file":
        with trans.open("a") as f:
            f.write("84-121123-0007 NOBODY RECORDED THIS\n")
        return Path(f"{trans}:3"), "84-121123-0007.flac not found"
    trans.write_text(trans.read_text() + "84-121123-0005 SOME WORDS\n")
    f = d / "84-121123-0005.flac"
    if kind == "unreadable":
        f.write_bytes(b"this is not a flac file")
        return f, "unreadable audio"
    if kind == "empty":
        f.write_bytes(b"")
        return f, "unreadable audio"
    if kind == "stereo":
        return write_audio(f, 1600, channels=2), "2 channels"
    if kind == "too short":
        return write_audio(f, 399), "shorter than the encoder's 400-sample"
    raise AssertionError(kind)


KINDS = ["missing transcript", "transcript for missing file", "unreadable", "empty", "stereo", "too short"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_one_line_error_naming_the_file(corpus: Path, tmp_path: Path, kind: str) -> None:
    file, reason = bad(corpus, kind)
    out = tmp_path / "out"
    with pytest.raises(S3LError) as e:
        prepare_librispeech(cfg(corpus, out))
    msg = str(e.value)
    assert msg.startswith(f"{file}: ") and reason in msg and "\n" not in msg
    assert not (out / "dev-clean.tsv").exists()  # nothing half-written


@pytest.mark.parametrize("kind", KINDS)
def test_skip_bad_writes_report(corpus: Path, tmp_path: Path, kind: str) -> None:
    file, reason = bad(corpus, kind)
    out = tmp_path / "out"
    result = prepare_librispeech(cfg(corpus, out, skip_bad=True))
    report = lines(out / "skipped-dev-clean.tsv")
    assert report[0] == "file\treason" and len(report) == 2
    assert report[1].split("\t")[0] == str(file) and reason in report[1]
    assert len(lines(out / "dev-clean.tsv")) == 1 + 3  # the three good utterances
    assert len(lines(out / "dev-clean.wrd")) == 3
    assert [s.skipped for s in result.splits] == [1, 0]
    assert not (out / "skipped-test-clean.tsv").exists()


def test_downmix_accepts_stereo(corpus: Path, tmp_path: Path) -> None:
    bad(corpus, "stereo")
    prepare_librispeech(cfg(corpus, tmp_path / "out", downmix=True))
    assert "84/121123/84-121123-0005.flac\t1600" in lines(tmp_path / "out" / "dev-clean.tsv")


def test_stale_skip_report_removed_with_force(corpus: Path, tmp_path: Path) -> None:
    f, _ = bad(corpus, "too short")
    out = tmp_path / "out"
    prepare_librispeech(cfg(corpus, out, skip_bad=True))
    assert (out / "skipped-dev-clean.tsv").exists()
    write_audio(f, 1600)
    prepare_librispeech(cfg(corpus, out, force=True))
    assert not (out / "skipped-dev-clean.tsv").exists()
    assert len(lines(out / "dev-clean.tsv")) == 1 + 4


def test_duplicate_and_empty_transcripts(corpus: Path, tmp_path: Path) -> None:
    trans = corpus / "test-clean" / "1089" / "134686" / "1089-134686.trans.txt"
    trans.write_text("1089-134686-0000 HE HOPED\n1089-134686-0000 AGAIN\n")
    with pytest.raises(S3LError, match=rf"^{trans}:2: duplicate utterance id"):
        prepare_librispeech(cfg(corpus, tmp_path / "out"))
    trans.write_text("1089-134686-0000 ...\n")
    with pytest.raises(S3LError, match=rf"^{trans}:1: empty transcript"):
        prepare_librispeech(cfg(corpus, tmp_path / "out"))


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the code under test catches it."""


def _files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.iterdir())}


def test_killed_run_reruns_without_force(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from s3l.prep import common

    ref, out = tmp_path / "ref", tmp_path / "out"
    prepare_librispeech(cfg(corpus, ref))
    out.mkdir()
    (out / "notes.txt").write_text("the user's")  # not an output: never touched
    real = common.write_split

    def killed_after_first_split(*a, **kw):
        real(*a, **kw)
        raise _Killed

    monkeypatch.setattr(common, "write_split", killed_after_first_split)
    with pytest.raises(_Killed):
        prepare_librispeech(cfg(corpus, out))
    assert (out / "dev-clean.tsv").is_file() and not (out / "test-clean.tsv").exists()
    assert (out / "prep.incomplete").is_file() and not (out / "prep.json").exists()
    monkeypatch.setattr(common, "write_split", real)
    prepare_librispeech(cfg(corpus, out))  # no --force needed: the files are the interrupted run's
    assert _files(out) == {**_files(ref), "notes.txt": "the user's"}  # same corpus, no record left

    with pytest.raises(S3LError, match=r"dev-clean.tsv \(and .* more\) already exists; pass --force"):
        prepare_librispeech(cfg(corpus, out))  # a complete corpus still needs --force
    monkeypatch.setattr(common, "write_split", killed_after_first_split)
    with pytest.raises(_Killed):
        prepare_librispeech(cfg(corpus, out, force=True))
    assert not (out / "prep.json").exists()  # the old corpus's summary goes before any file is replaced
    monkeypatch.setattr(common, "write_split", real)
    from s3l.prep.folder import DirConfig, prepare_dir

    with pytest.raises(S3LError, match=rf"^{out / 'prep.incomplete'}: .*interrupted `s3l prep librispeech`; rerun"):
        prepare_dir(DirConfig(root=corpus, out=out, valid_percent=0))  # another preparer's partial output
    prepare_librispeech(cfg(corpus, out))
    assert _files(out) == {**_files(ref), "notes.txt": "the user's"}


def test_rerun_removes_only_recorded_files_it_no_longer_writes(corpus: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "out"
    out.mkdir()
    (out / "skipped-dev-clean.tsv").write_text("file\treason\nx\ty\n")  # left by the interrupted run
    (out / "old.tsv").write_text("not recorded\n")
    (out / "prep.incomplete").write_text(json.dumps({"format_version": 1, "command": "prep librispeech",
                                                     "outputs": ["skipped-dev-clean.tsv", "gone.txt"]}))
    (out / "gone.txt").write_text("recorded, not written by this run\n")
    prepare_librispeech(cfg(corpus, out))
    assert not (out / "skipped-dev-clean.tsv").exists() and not (out / "gone.txt").exists()
    assert (out / "old.tsv").read_text() == "not recorded\n" and not (out / "prep.incomplete").exists()
    (out / "prep.incomplete").write_text(json.dumps({"command": "prep librispeech", "outputs": ["../x"]}))
    with pytest.raises(S3LError, match=r"prep.incomplete: not a record written by `s3l prep`"):
        prepare_librispeech(cfg(corpus, out))
