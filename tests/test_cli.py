"""The ``s3l`` command line: one red line and exit 2 for user errors, and every ``prep`` command end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf


def s3l(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "s3l", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def write(path: Path, frames: int, sr: int = 16_000, channels: int = 1, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.2 * np.sin(np.arange(frames) / 4.0)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, sr, format=fmt)


def test_user_error_is_one_red_line(tmp_path: Path) -> None:
    missing = tmp_path / ("a-rather-long-directory-name-" * 4) / "audio"  # longer than a terminal line
    r = s3l("prep", "dir", missing, "--out", tmp_path / "out")
    assert r.returncode == 2
    assert r.stderr == f"error: {missing}: audio directory not found\n"
    assert r.stdout == "" and "Traceback" not in r.stderr


def test_usage_error_exits_2_without_traceback(tmp_path: Path) -> None:
    r = s3l("prep", "dir", tmp_path)  # --out is required
    assert r.returncode == 2 and "--out" in r.stderr and "Traceback" not in r.stderr


def test_help_lists_prep_commands() -> None:
    r = s3l("--help")
    assert r.returncode == 0 and "prep" in r.stdout
    r = s3l("prep", "--help")
    assert r.returncode == 0
    for cmd in ("librispeech", "librilight", "timit", "dir"):
        assert cmd in r.stdout


def test_prep_dir_flags(tmp_path: Path) -> None:
    for i in range(10):
        write(tmp_path / "audio" / f"{i}.wav", 600 + i)
    write(tmp_path / "audio" / "x.ogg", 600, fmt="OGG")
    write(tmp_path / "audio" / "stereo.wav", 800, channels=2)
    out = tmp_path / "out"
    r = s3l("prep", "dir", tmp_path / "audio", "--out", out, "--ext", "wav", "--valid-percent", "0.2",
            "--seed", "3", "--skip-bad")
    assert r.returncode == 0, r.stderr
    train, valid = (out / "train.tsv").read_text().splitlines(), (out / "valid.tsv").read_text().splitlines()
    held_stereo = (out / "skipped-valid.tsv").exists()
    assert len(train) - 1 + len(valid) - 1 == 10  # the 11 .wav files but the stereo one
    assert len(valid) - 1 + held_stereo == 2  # round(20% of 11) drawn before the stereo file was rejected
    assert "stereo.wav" in (out / f"skipped-{'valid' if held_stereo else 'train'}.tsv").read_text()
    assert "x.ogg" not in "".join(train + valid) and "skipped 1 bad item" in r.stderr
    assert "train" in r.stdout and "utterances" in r.stdout  # the summary table
    r = s3l("prep", "dir", tmp_path / "audio", "--out", out, "--ext", "wav")
    assert r.returncode == 2 and "already exists; pass --force" in r.stderr
    r = s3l("prep", "dir", tmp_path / "audio", "--out", out, "--ext", "wav", "--downmix", "--force",
            "--valid-percent", "0")
    assert r.returncode == 0, r.stderr
    assert "stereo.wav\t800" in (out / "train.tsv").read_text()


def test_prep_librispeech_and_librilight(tmp_path: Path) -> None:
    ls = tmp_path / "LibriSpeech"
    for split, spk in (("dev-clean", "84"), ("test-other", "1688")):
        write(ls / split / spk / "100" / f"{spk}-100-0000.flac", 800)
        (ls / split / spk / "100" / f"{spk}-100.trans.txt").write_text(f"{spk}-100-0000 HELLO THERE\n")
    r = s3l("prep", "librispeech", ls, "--out", tmp_path / "ls", "--splits", "test-other")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "ls").glob("*.tsv")) == ["test-other.tsv"]
    assert (tmp_path / "ls" / "test-other.ltr").read_text() == "H E L L O | T H E R E |\n"

    base = tmp_path / "ll" / "librispeech_finetuning"
    for k, fold in enumerate([f"1h/{i}" for i in range(6)] + ["9h"]):
        for sub in ("clean", "other"):
            (base / fold / sub).mkdir(parents=True)
        d = base / fold / "clean" / "19" / str(198 + k)
        write(d / f"19-{198 + k}-0000.flac", 500 + k)
        (d / f"19-{198 + k}.trans.txt").write_text(f"19-{198 + k}-0000 WORD\n")
    r = s3l("prep", "librilight", tmp_path / "ll", "--out", tmp_path / "llout")
    assert r.returncode == 0, r.stderr
    sizes = {s: len((tmp_path / "llout" / f"{s}.tsv").read_text().splitlines()) - 1
             for s in ("train-10min", "train-1h", "train-10h")}
    assert sizes == {"train-10min": 1, "train-1h": 6, "train-10h": 7}


def test_prep_timit(tmp_path: Path) -> None:
    root = tmp_path / "timit"
    for part, spk in (("TRAIN", "FCJF0"), ("TRAIN", "MDAC0"), ("TEST", "MDAB0")):
        d = root / part / "DR1" / spk
        write(d / "SX10.WAV", 640, fmt="NIST")
        (d / "SX10.PHN").write_text("0 160 h#\n160 640 s\n")
        (d / "SX10.TXT").write_text("0 640 Yes.\n")
    r = s3l("prep", "timit", root, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "standard dev/core-test speakers" in r.stderr
    assert (tmp_path / "out" / "test.phn").read_text() == "sil s s s\n"
    assert (tmp_path / "out" / "train.wrd").read_text() == "YES\n"


def test_library_never_imports_the_cli() -> None:
    """Only s3l/cli/ (and the entry point) import s3l.cli: a library user never loads typer or the commands."""
    import ast

    root = Path(__file__).resolve().parents[1] / "s3l"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if rel.parts[1] == "cli" or rel.as_posix() == "s3l/__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}:{node.lineno}" for n in names if n == "s3l.cli" or n.startswith("s3l.cli.")]
    assert offenders == []
    probe = ("import sys, s3l.train.loop, s3l.decode.run, s3l.analysis.run, s3l.progress; "
             "print(sorted(m for m in sys.modules if m == 's3l.cli' or m.startswith(('s3l.cli.', 'typer'))))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "[]"


def test_help_imports_no_torch() -> None:
    probe = ("import sys; from s3l.cli import app; from typer.main import get_command; "
             "get_command(app).main(['--help'], standalone_mode=False); print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("False")
