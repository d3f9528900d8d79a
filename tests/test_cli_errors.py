"""Every subcommand's user errors: one ``error:`` line on stderr, exit 2, no traceback, no empty directory left.

The sweep runs each command in-process through :func:`s3l.cli.main` (the console entry point) with an output
path that cannot be written (under ``/proc``), an existing file where an output directory is expected (and a
directory where a file is), and numbers out of range. Errors are found before any model is built.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer.main

from s3l.cli import app, main
from s3l.errors import S3LError
from s3l.manifest import write_split
from s3l.paths import writing_to

ANSI = re.compile(r"\x1b\[[0-9;]*m")
OUT = "<OUT>"  # replaced by the output path under test


@dataclass(frozen=True)
class Inputs:
    root: Path
    audio: Path  # two short wavs
    data: Path  # train (3 utterances) and dev (2) with .wrd/.ltr and dict.ltr.txt
    text: Path  # LM text
    a_file: Path  # an existing regular file


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    audio = root / "audio"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"{i}.wav", 0.1 * np.sin(np.arange(1600 + 160 * i) / 5.0), 16_000)
    data = root / "data"
    for split, n in (("train", 3), ("dev", 2)):
        rows = []
        for i in range(n):
            size = 8000 + 800 * i
            sf.write(audio / f"{split}{i}.wav", (0.1 * np.sin(np.arange(size) / 5.0)).astype(np.float32), 16_000)
            rows.append((f"{split}{i}.wav", size))
        write_split(data, split, audio, rows, words=["AB BA"] * n)
    (data / "dict.ltr.txt").write_text("| 1\nA 1\nB 1\n")
    text = root / "lm.txt"
    text.write_text("A B\nB A\n")
    a_file = root / "a-file.txt"
    a_file.write_text("not a directory\n")
    return Inputs(root, audio, data, text, a_file)


def commands(i: Inputs) -> dict[str, tuple[list[str], str, str]]:
    """name -> (argv with OUT where the output path goes, the option naming it, "dir" or "file")."""
    missing = str(i.root / "missing.safetensors")
    data = ["--data", str(i.data)]
    # should a check ever be lost, training stops after one small update instead of running the preset's budget
    short = ["--max-updates", "1", "--max-tokens", "16000", "--num-workers", "0", "--threads", "1"]
    return {
        "prep dir": (["prep", "dir", str(i.audio), "--out", OUT], "--out", "dir"),
        "prep librispeech": (["prep", "librispeech", str(i.audio), "--out", OUT], "--out", "dir"),
        "prep librilight": (["prep", "librilight", str(i.audio), "--out", OUT], "--out", "dir"),
        "prep timit": (["prep", "timit", str(i.audio), "--out", OUT], "--out", "dir"),
        "prep synth": (["prep", "synth", "--out", OUT, "--hours", "0.001"], "--out", "dir"),
        "prep lm": (["prep", "lm", str(i.text), "--out", OUT], "--out", "file"),
        "prep lm --json": (["prep", "lm", str(i.text), "--out", str(i.root / "lm.arpa"), "--json", OUT], "--json",
                           "file"),
        "cluster": (["cluster", *data, "--out", OUT], "--out", "dir"),
        "pretrain": (["pretrain", "--objective", "contrastive", *data, "--valid-split", "dev", "--preset", "tiny",
                      *short, "--out", OUT], "--out", "dir"),
        "finetune": (["finetune", *data, "--train-split", "train", "--valid-split", "dev", "--from-scratch",
                      "--preset", "tiny", *short, "--out", OUT], "--out", "dir"),
        "decode": (["decode", *data, "--split", "dev", "--checkpoint", missing, "--out", OUT], "--out", "dir"),
        "score": (["score", "--ref", str(i.data / "dev.wrd"), "--hyp", str(i.data / "dev.wrd"), "--json", OUT],
                  "--json", "file"),
        "analyze-units": (["analyze-units", "--units", str(i.data / "dev.wrd"), "--phones", str(i.data / "dev.wrd"),
                           "--out", OUT], "--out", "dir"),
        "probe": (["probe", *data, "--fit-split", "train", "--eval-split", "dev", "--feature", "mfcc", "--out", OUT],
                  "--out", "dir"),
        "export": (["export", missing, OUT], "OUT", "dir"),
        "export --to s3l": (["export", missing, OUT, "--to", "s3l"], "OUT", "file"),
    }


NAMES = list(commands(Inputs(*[Path("unused")] * 5)))  # the names do not depend on the paths


def test_the_sweep_covers_every_subcommand(inputs: Inputs) -> None:
    covered = {tuple(argv[:2] if argv[0] == "prep" else argv[:1]) for argv, _, _ in commands(inputs).values()}
    assert covered == {path for path, _ in leaf_commands()}


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    """Run ``s3l argv`` in-process; returns (exit status, stderr without colour codes)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    return e.value.code, ANSI.sub("", capsys.readouterr().err)


def assert_user_error(status: int, err: str, *words: str) -> str:
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def dirs(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_dir()}


def subst(argv: list[str], out: Path | str) -> list[str]:
    return [str(out) if a == OUT else a for a in argv]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where", ["under-proc", "proc"])
def test_unwritable_out(name: str, where: str, inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    argv, option, kind = commands(inputs)[name]
    # /proc/s3l-test cannot be created (ENOENT even for root); /proc itself exists but takes no new files
    if where == "under-proc":
        out = Path("/proc/s3l-test") / ("out" if kind == "dir" else "out.json")
    else:
        out = Path("/proc") if kind == "dir" else Path("/proc/out.json")
    before = dirs(inputs.root)
    status, err = run(capsys, subst(argv, out))
    line = assert_user_error(status, err, option, str(out))
    if where == "under-proc":
        assert "cannot create directory /proc/s3l-test" in line
    else:
        assert "cannot write files in /proc" in line
    assert dirs(inputs.root) == before


@pytest.mark.parametrize("name", NAMES)
def test_wrong_kind_of_existing_out(name: str, inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    """A file where a directory is expected, a directory where a file is."""
    argv, option, kind = commands(inputs)[name]
    if kind == "dir":
        out, expect = inputs.a_file, "exists and is not a directory"
    else:
        out, expect = inputs.audio, "is a directory"
    before = dirs(inputs.root)
    status, err = run(capsys, subst(argv, out) + ["--force"])
    assert_user_error(status, err, option, str(out), expect)
    assert dirs(inputs.root) == before
    assert inputs.a_file.read_text() == "not a directory\n"


def test_out_under_a_file(inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run(capsys, ["prep", "dir", inputs.audio, "--out", inputs.a_file / "sub"])
    assert_user_error(status, err, "--out", "is not a directory")


# Out-of-range numbers: (command, extra arguments, the option the message must name).
NUMBERS = [
    ("probe", ["--max-frames", "0"], "--max-frames"),
    ("probe", ["--seed", "-1"], "--seed"),
    ("probe", ["--batch-seconds", "0"], "--batch-seconds"),
    ("prep dir", ["--valid-percent", "1.5"], "--valid-percent"),
    ("prep dir", ["--seed", "-1"], "--seed"),
    ("prep synth", ["--hours", "inf"], "--hours"),
    ("prep synth", ["--hours", "nan"], "--hours"),
    ("prep synth", ["--hours", "-1"], "--hours"),
    ("prep synth", ["--hours", "0"], "--hours"),
    ("prep synth", ["--workers", "0"], "--workers"),
    ("prep synth", ["--dev-minutes", "inf"], "--dev-minutes"),
    ("prep synth", ["--lm-sentences", "-1"], "--lm-sentences"),
    ("prep lm", ["--order", "0"], "--order"),
    ("cluster", ["--k", "1"], "--k"),
    ("cluster", ["--sample-pct", "0"], "--sample-pct"),
    ("cluster", ["--tol", "nan"], "--tol"),
    ("cluster", ["--max-memory", "inf"], "--max-memory"),
    ("cluster", ["--num-shards", "0"], "--num-shards"),
    ("cluster", ["--nproc", "0"], "--nproc"),
    ("cluster", ["--seed", "-1"], "--seed"),
    ("pretrain", ["--num-workers", "-1"], "--num-workers"),
    ("pretrain", ["--threads", "-1"], "--threads"),
    ("pretrain", ["--nproc", "0"], "--nproc"),
    ("pretrain", ["--lr", "nan"], "--lr"),
    ("pretrain", ["--clip-norm", "inf"], "--clip-norm"),
    ("pretrain", ["--weight-decay", "-1"], "--weight-decay"),
    ("pretrain", ["--mask-prob", "2"], "--mask-prob"),
    ("pretrain", ["--max-bad-updates", "0"], "--max-bad-updates"),
    ("pretrain", ["--max-sample-size", "0"], "--max-sample-size"),
    ("pretrain", ["--seed", "-1"], "--seed"),
    ("pretrain", ["--max-updates", "0"], "--max-updates"),
    ("pretrain", ["--label-rate", "inf"], "--label-rate"),
    ("pretrain", ["--model-arg", "encoder_layers=0"], "encoder_layers"),
    ("pretrain", ["--model-arg", "encoder_attention_heads=0"], "encoder_attention_heads"),
    ("pretrain", ["--model-arg", "dropout=1"], "dropout"),
    ("pretrain", ["--model-arg", "logit_temp=nan"], "logit_temp"),
    ("pretrain", ["--model-arg", "replace=1"], "replace"),
    ("finetune", ["--num-workers", "-1"], "--num-workers"),
    ("finetune", ["--threads", "-1"], "--threads"),
    ("finetune", ["--layerdrop", "1"], "--layerdrop"),
    ("finetune", ["--mask-channel-prob", "nan"], "--mask-channel-prob"),
    ("finetune", ["--min-sample-size", "-1"], "--min-sample-size"),
    ("finetune", ["--model-arg", "encoder_layers=0"], "encoder_layers"),
    ("finetune", ["--model-arg", "final_dropout=-0.1"], "final_dropout"),
    ("decode", ["--beam", "0"], "--beam"),
    ("decode", ["--lm-weight", "nan"], "--lm-weight"),
    ("decode", ["--tune-word-score-max", "-1"], "--tune-word-score-max"),
    ("decode", ["--nproc", "0"], "--nproc"),
    ("score", ["--top", "-1"], "--top"),
    ("analyze-units", ["--max-diff-ms", "inf"], "--max-diff-ms"),
    ("analyze-units", ["--phone-rate", "0"], "--phone-rate"),
    ("analyze-units", ["--k", "1"], "--k"),
]


@pytest.mark.parametrize(("name", "extra", "option"), NUMBERS, ids=[f"{n} {' '.join(e)}" for n, e, _ in NUMBERS])
def test_out_of_range_numbers(name: str, extra: list[str], option: str, inputs: Inputs, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    argv, _, kind = commands(inputs)[name]
    out = tmp_path / "new" / ("out" if kind == "dir" else "out.json")
    status, err = run(capsys, subst(argv, out) + extra)
    assert_user_error(status, err, option)
    assert dirs(tmp_path) == set()  # nothing created, not even the parent of --out


def leaf_commands() -> list[tuple[tuple[str, ...], object]]:
    def walk(cmd: object, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], object]]:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            return [(path, cmd)]
        return [leaf for name, sub in subs.items() for leaf in walk(sub, (*path, name))]

    return walk(typer.main.get_command(app), ())


def float_options() -> list[tuple[tuple[str, ...], str, list[str]]]:
    """(command path, a float option, the command's required parameters filled with parseable values)."""
    found = []
    for path, cmd in leaf_commands():
        annotations = {name: p.annotation for name, p in inspect.signature(cmd.callback).parameters.items()}
        required: list[str] = []
        for p in cmd.params:
            if p.required:
                value = "1" if annotations[p.name] in ("float", "int") else "unused-path"
                required += [value] if p.param_type_name == "argument" else [p.opts[0], value]
        found += [(path, p.opts[0], required) for p in cmd.params if annotations[p.name] == "float"]
    return found


@pytest.mark.parametrize(("path", "option", "required"), float_options(),
                         ids=[f"{' '.join(p)} {o}" for p, o, _ in float_options()])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_every_float_option_is_finite(path: tuple[str, ...], option: str, required: list[str], value: str,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Rejected by the parser, before the command runs (its required paths do not even exist)."""
    monkeypatch.chdir(tmp_path)
    status, err = run(capsys, [*path, *required, option, value])
    assert_user_error(status, err, f"'{option}'", value)
    assert list(tmp_path.iterdir()) == []


def test_no_single_letter_option_means_two_things() -> None:
    meanings: dict[str, set[str]] = {}
    for _, cmd in leaf_commands():
        for p in cmd.params:
            names = [*p.opts, *p.secondary_opts]
            long = next((n for n in names if n.startswith("--")), p.name)
            for short in (n for n in names if re.fullmatch(r"-[A-Za-z]", n)):
                meanings.setdefault(short, set()).add(long)
    assert meanings and all(len(v) == 1 for v in meanings.values()), meanings


def test_usage_errors_are_one_line_and_help_still_works(inputs: Inputs, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run(capsys, ["prep", "dir", inputs.audio])
    assert_user_error(status, err, "Missing option '--out'", "s3l prep dir --help")
    status, err = run(capsys, ["prep", "lm", inputs.text, "-o", "3", "--out", inputs.root / "x.arpa"])
    assert_user_error(status, err, "No such option: -o")
    status, err = run(capsys, ["no-such-command"])
    assert_user_error(status, err, "No such command")
    with pytest.raises(SystemExit) as e:
        main(["prep", "lm", "--help"])
    assert e.value.code == 0 and "--order" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2 and "Usage: s3l" in ANSI.sub("", capsys.readouterr().out)


def test_failure_after_the_command_made_its_out_leaves_no_directory(inputs: Inputs, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """decode creates HYPDIR before it reads the checkpoint; an unreadable one must not leave a/b/c behind."""
    junk = tmp_path / "junk.safetensors"
    junk.write_text("not safetensors\n")
    status, err = run(capsys, ["decode", "--data", inputs.data, "--split", "dev", "--checkpoint", junk,
                               "--out", tmp_path / "a" / "b" / "c", "--device", "cpu"])
    assert_user_error(status, err, str(junk))
    assert dirs(tmp_path) == set()


def test_writing_to_removes_only_new_directories_that_stay_empty(tmp_path: Path) -> None:
    def fail_inside(**paths: Path) -> None:
        with pytest.raises(S3LError), writing_to(dirs=paths):
            for p in paths.values():
                (p / "sub" / "deeper").mkdir(parents=True, exist_ok=True)  # what a command may leave
            raise S3LError("failed")

    fail_inside(**{"--out": tmp_path / "new" / "out"})
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old").mkdir()
    with pytest.raises(S3LError), writing_to(dirs={"--out": tmp_path / "old"}):
        raise S3LError("failed")
    assert dirs(tmp_path) == {tmp_path / "old"}  # it existed before: kept
    with pytest.raises(S3LError), writing_to(dirs={"--out": tmp_path / "kept"}):
        (tmp_path / "kept").mkdir()
        (tmp_path / "kept" / "part.txt").write_text("x")
        raise S3LError("failed")
    assert (tmp_path / "kept" / "part.txt").is_file()
    with pytest.raises(SystemExit), writing_to(dirs={"--out": tmp_path / "ok"}):
        (tmp_path / "ok").mkdir()
        sys.exit(0)  # success: an empty output stays
    assert (tmp_path / "ok").is_dir()
    with pytest.raises(SystemExit), writing_to(files={"--json": tmp_path / "x" / "r.json"}):
        (tmp_path / "x").mkdir()
        sys.exit(1)  # the exit status of failed workers
    assert not (tmp_path / "x").exists()
    with writing_to(dirs={"--out": tmp_path / "later"}):
        assert not (tmp_path / "later").exists()  # checked, then removed: the command creates it when it writes


def test_through_the_console_script(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "s3l", "prep", "synth", "--out", tmp_path / "c", "--hours", "inf"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == ("error: Invalid value for '--hours': inf is not a finite number in the range x>0 "
                        "(see 's3l prep synth --help')\n")
    assert list(tmp_path.iterdir()) == []
