"""`s3l pretrain` end to end on tiny generated audio with a shrunken model: outputs, HuBERT labels, user errors,
SIGKILL + --resume, --nproc 2; and the presets' paper values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_train_data import make_corpus
from typer.testing import CliRunner

from s3l.checkpoint import read_metadata
from s3l.cli import app
from s3l.errors import S3LError
from s3l.pretrain import PretrainConfig, label_rates, resolve
from s3l.train.log import read_jsonl

S3L = [sys.executable, "-m", "s3l"]
SMALL = ["conv_dim=32", "encoder_layers=2", "encoder_embed_dim=32", "encoder_ffn_embed_dim=64",
         "encoder_attention_heads=2", "conv_pos=16", "conv_pos_groups=2", "final_dim=16", "latent_vars=8",
         "num_negatives=10"]
FAST = ["--preset", "tiny", "--threads", "1", "--max-tokens", "32000", "--max-sample-size", "16000",
        "--min-sample-size", "8000",
        "--log-interval", "1", "--num-workers", "0", *[a for kv in SMALL for a in ("--model-arg", kv)]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    train = [int(n) for n in rng.integers(12000, 30000, size=12)] + [4000]  # the last one is too short
    make_corpus(root, train)
    make_corpus(root, [16000, 20000], seed=1, name="valid")
    km = root / "km"
    km.mkdir()
    for split, sizes in (("train", train), ("valid", [16000, 20000])):
        lines = [" ".join(str(int(v)) for v in rng.integers(0, 5, size=n // 160)) for n in sizes]
        (km / f"{split}.km").write_text("".join(ln + "\n" for ln in lines))
    (km / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(5)))
    (km / "labels.json").write_text(json.dumps({"format_version": 1, "label_rate": 100}))
    return root


def cli(*args: str) -> str:
    """Run ``s3l ARGS`` in this process; return the S3LError message ('' on success)."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is None:
        return ""
    if isinstance(result.exception, S3LError):
        return str(result.exception)
    raise result.exception


def s3l(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    p = subprocess.run([*S3L, *args], capture_output=True, text=True, env=env, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_contrastive_run_writes_everything(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = CliRunner().invoke(app, ["pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out),
                                 *FAST, "--max-updates", "3", "--valid-interval", "2", "--save-interval", "2"])
    assert p.exit_code == 0, p.output
    assert "train_skipped_short" in p.output and "pre-training done" in p.output and "audio s/s" in p.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["optimisation"]["max_updates"] == 3 and cfg["optimisation"]["warmup_updates"] == 1  # 8 % of 3
    assert cfg["model"]["encoder_layers"] == 2 and cfg["data"]["train_skipped_short"] == 1
    log = read_jsonl(out / "train.jsonl")
    assert [r["update"] for r in log] == [1, 2, 3]
    assert {"loss", "accuracy", "code_perplexity", "temperature", "lr", "gnorm", "audio_s_per_s"} <= set(log[0])
    assert [r["update"] for r in read_jsonl(out / "valid.jsonl")] == [2, 3]
    meta = read_metadata(out / "checkpoint_last.safetensors")
    assert meta["kind"] == "wav2vec2" and meta["num_updates"] == 3 and meta["config"]["encoder_layers"] == 2
    assert read_metadata(out / "checkpoint_best.safetensors")["num_updates"] in (2, 3)
    assert json.loads((out / "summary.json").read_text())["num_updates"] == 3
    # an existing run is protected; --force starts over
    again = cli("pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
                "--max-updates", "1")
    assert "holds a run" in again and "--resume" in again
    assert not cli("pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
                   "--max-updates", "1", "--valid-split", "", "--force")
    assert [r["update"] for r in read_jsonl(out / "train.jsonl")] == [1] and not (out / "valid.jsonl").exists()


def test_hubert_run_and_label_errors(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "hubert"
    assert not cli("pretrain", "--objective", "hubert", "--data", str(corpus), "--out", str(out), *FAST,
                   "--labels", str(corpus / "km"), "--max-updates", "2", "--valid-interval", "2")
    log = read_jsonl(out / "train.jsonl")
    assert "acc_masked" in log[-1] and read_metadata(out / "checkpoint_last.safetensors")["num_classes"] == [5]
    assert json.loads((out / "config.json").read_text())["model"]["label_rates"] == [100.0]
    bad = tmp_path / "bad_km"
    bad.mkdir()
    lines = (corpus / "km" / "train.km").read_text().splitlines()
    (bad / "dict.km.txt").write_text((corpus / "km" / "dict.km.txt").read_text())
    (bad / "train.km").write_text("\n".join(lines[:-1]) + "\n")
    hubert = ["pretrain", "--objective", "hubert", "--data", str(corpus), "--out", str(tmp_path / "x"), *FAST,
              "--labels", str(bad)]
    p = s3l(*hubert, "--label-rate", "100", check=False)  # through the real entry point: one red line, exit 2
    assert p.returncode == 2 and "bad_km/train.km: 12 lines but" in p.stderr and "Traceback" not in p.stderr
    (bad / "train.km").write_text("\n".join(lines) + "\n")
    msg = cli(*hubert, "--label-rate", "50")
    assert "bad_km/train.km:1: " in msg and "train.tsv:2" in msg and "look like 100 Hz" in msg
    assert "pass --label-rate" in cli(*hubert)


def test_sigkill_then_resume(corpus: Path, tmp_path: Path) -> None:
    # The run is long enough that the poll below (every 0.05 s) cannot miss the window between a checkpoint at
    # update >= 4 and the end: at 12 updates a loaded CI machine once saw the run finish first.
    out = tmp_path / "killed"
    total = 100
    args = ["pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
            "--max-updates", str(total), "--save-interval", "2", "--valid-interval", "1000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*S3L, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    state = out / "checkpoint_last.state.safetensors"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and read_metadata(out / "checkpoint_last.safetensors")["num_updates"] >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = read_metadata(out / "checkpoint_last.safetensors")["num_updates"]
    assert 4 <= saved < total
    p = s3l(*args, "--resume")
    assert f"resuming from update {saved} " in p.stderr
    assert [r["update"] for r in read_jsonl(out / "train.jsonl")] == list(range(1, total + 1))
    assert read_metadata(out / "checkpoint_last.safetensors")["num_updates"] == total


def start_and_wait_for_updates(cmd: list[str], out: Path, updates: int, **popen: Any) -> subprocess.Popen:
    """Start a training command (stderr piped) and return once ``out/train.jsonl`` logs ``updates`` updates."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **popen)
    log, deadline = out / "train.jsonl", time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(read_jsonl(log)) >= updates:
            break
        time.sleep(0.05)
    return proc


def test_ctrl_c_saves_and_resume_continues_exactly(corpus: Path, tmp_path: Path) -> None:
    """SIGINT stops between two updates after writing checkpoint_last (off the save interval), exits 130 and says
    so; --resume then ends with the very weights of an uninterrupted run."""
    from safetensors.torch import load_file

    def args(out: Path) -> list[str]:
        return ["pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
                "--max-updates", "40", "--save-interval", "100", "--valid-split", ""]  # 40: the run outlasts the poll

    s3l(*args(tmp_path / "whole"))
    out = tmp_path / "stopped"
    proc = start_and_wait_for_updates([*S3L, *args(out)], out, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    saved = read_metadata(out / "checkpoint_last.safetensors")["num_updates"]
    assert 2 <= saved < 40 and f"stopped at update {saved}: " in err and "continue with --resume" in err
    assert "Traceback" not in err
    p = s3l(*args(out), "--resume")
    assert f"resuming from update {saved} " in p.stderr
    whole, resumed = (load_file(str(d / "checkpoint_last.safetensors")) for d in (tmp_path / "whole", out))
    assert all(np.array_equal(whole[k].numpy(), resumed[k].numpy()) for k in whole)


def test_ctrl_c_under_nproc_2_saves_once_all_processes_agree(corpus: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal reaches the launcher and both workers; they stop at the same update and save."""
    out = tmp_path / "ddp"
    args = [*S3L, "pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
            "--max-updates", "40", "--save-interval", "100", "--valid-split", "", "--nproc", "2"]
    proc = start_and_wait_for_updates(args, out, 2, start_new_session=True)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground process group
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    saved = read_metadata(out / "checkpoint_last.safetensors")["num_updates"]
    assert 2 <= saved < 40 and err.count(f"stopped at update {saved}: ") == 1 and "Traceback" not in err
    p = s3l(*args[3:-2], "--resume")  # the same command with one process continues it
    assert f"resuming from update {saved} " in p.stderr and "instead of 2" in p.stderr


def test_a_directory_without_a_checkpoint_is_not_a_run(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "early"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "train.jsonl").write_text('{"update": 1}\n')
    base = ["pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
            "--max-updates", "1", "--valid-split", ""]
    msg = cli(*base, "--resume")
    assert "nothing to resume" in msg and "run without --resume to start anew" in msg
    p = s3l(*base)
    assert "has no saved checkpoint" in p.stderr and "starting anew" in p.stderr
    assert read_metadata(out / "checkpoint_last.safetensors")["num_updates"] == 1
    assert "holds a run saved at update 1; pass --resume" in cli(*base)


def test_validation_split_defaults_to_dev_when_present(corpus: Path, tmp_path: Path) -> None:
    from s3l.manifest import resolve_valid_split

    assert resolve_valid_split(corpus, "auto") == "valid" and resolve_valid_split(corpus, "") is None
    (tmp_path / "dev.tsv").write_text("/\n")
    (tmp_path / "valid.tsv").write_text("/\n")
    assert resolve_valid_split(tmp_path, "auto") == "dev" and resolve_valid_split(tmp_path, "valid") == "valid"
    with pytest.raises(S3LError, match="no dev.tsv or valid.tsv"):
        resolve_valid_split(tmp_path / "none", "auto")
    p = s3l("pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(tmp_path / "r"), *FAST,
            "--max-updates", "1")
    assert f"validating on valid ({corpus / 'valid.tsv'}" in p.stderr


def test_a_half_written_label_set_is_refused(corpus: Path, tmp_path: Path) -> None:
    import shutil

    km = tmp_path / "km"
    shutil.copytree(corpus / "km", km)
    (km / "labels.json").unlink()
    (km / "labels.incomplete").write_text("{}")  # what a killed `s3l cluster` leaves
    msg = cli("pretrain", "--objective", "hubert", "--data", str(corpus), "--out", str(tmp_path / "o"), *FAST,
              "--labels", str(km), "--label-rate", "100", "--max-updates", "1")
    assert f"{km}: incomplete label set" in msg and "rerun the `s3l cluster` command" in msg


def test_two_processes(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    s3l("pretrain", "--objective", "contrastive", "--data", str(corpus), "--out", str(out), *FAST,
        "--max-updates", "2", "--valid-interval", "2", "--nproc", "2")
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert read_metadata(out / "checkpoint_last.safetensors")["num_updates"] == 2
    assert [r["update"] for r in read_jsonl(out / "train.jsonl")] == [1, 2]


def test_user_errors(corpus: Path, tmp_path: Path) -> None:
    base = ["pretrain", "--data", str(corpus), "--out", str(tmp_path / "e"), *FAST]
    cases = [
        (["--objective", "contrastive", "--precision", "fp16", "--device", "cpu"], "needs a CUDA device"),
        (["--objective", "hubert"], "needs --labels"),
        (["--objective", "contrastive", "--labels", str(corpus / "km")], "contrastive pre-training needs none"),
        (["--objective", "contrastive", "--resume"], "nothing to resume"),
        (["--objective", "contrastive", "--train-split", "nope"], "split 'nope' not found"),
        (["--objective", "contrastive", "--model-arg", "dropout=lots"], "--model-arg dropout=lots"),
        (["--objective", "contrastive", "--max-tokens", "1000"], "exceeds --max-tokens 1000"),
        (["--objective", "contrastive", "--min-sample-size", "99999"], "no utterance left"),
    ]
    for extra, message in cases:
        assert message in cli(*base, *extra), extra
    assert not (tmp_path / "e" / "config.json").exists()  # failed starts leave no run behind


def test_presets_follow_the_papers(tmp_path: Path) -> None:
    def opt(preset: str, objective: str, **kw: object) -> object:
        return resolve(PretrainConfig(objective=objective, data=tmp_path, out=tmp_path, preset=preset, **kw))

    model, o = opt("base", "contrastive")
    assert (o.lr, o.warmup_updates, o.max_updates, o.max_tokens, o.clip_norm) == (5e-4, 32_000, 400_000,
                                                                                    1_400_000, 0.0)
    assert (o.max_sample_size, o.min_sample_size) == (250_000, 32_000) and model.mask_prob == 0.65
    model, o = opt("base", "hubert")
    assert (o.lr, o.warmup_updates, o.clip_norm, model.mask_prob) == (5e-4, 32_000, 10.0, 0.80)
    assert opt("large", "hubert")[1].lr == 1.5e-3 and opt("xlarge", "hubert")[1].max_tokens == 360_000
    # the CPU demo: 32 s of audio per wav2vec 2.0 update (its contrastive task needs it), 4 s per HuBERT update
    assert (opt("tiny", "contrastive")[1].max_tokens, opt("tiny", "hubert")[1].max_tokens) == (512_000, 64_000)
    # the Gumbel temperature: the papers' per-update decay for BASE/LARGE (at 400k updates tau reaches 0.5 after
    # 277k, 69 %); tiny reaches its floor at the same share of its own run, whatever --max-updates is
    assert opt("base", "contrastive")[0].latent_temp == (2.0, 0.5, 0.999995)
    assert opt("large", "contrastive")[0].latent_temp == (2.0, 0.1, 0.999995)
    for updates in (None, 100, 5000):
        model, o = opt("tiny", "contrastive", max_updates=updates)
        t_max, t_min, decay = model.latent_temp
        floor_at = round(0.69 * o.max_updates)
        assert t_max * decay ** floor_at == pytest.approx(t_min) and t_max * decay ** (floor_at // 2) > 0.9
    assert opt("tiny", "contrastive", model_args=(("latent_temp", "2,0.5,0.9"),))[0].latent_temp == (2, 0.5, 0.9)
    assert opt("tiny", "contrastive", temp_floor_at=0.5)[0].latent_temp[2] == pytest.approx(0.25 ** (1 / 400))
    model, o = opt("base", "contrastive", max_updates=1000, mask_prob=0.5, model_args=(("dropout", "0"),))
    assert o.warmup_updates == 80 and model.mask_prob == 0.5 and model.dropout == 0.0
    with pytest.raises(S3LError, match="xlarge"):
        opt("xlarge", "contrastive")
    km = tmp_path / "km"
    km.mkdir()
    (km / "labels.json").write_text(json.dumps({"label_rate": 50}))
    cfg = PretrainConfig(objective="hubert", data=tmp_path, out=tmp_path, labels=(km,))
    assert label_rates(cfg) == (50.0,)
    with pytest.raises(S3LError, match="--label-rate 100 contradicts"):
        label_rates(PretrainConfig(objective="hubert", data=tmp_path, out=tmp_path, labels=(km,), label_rate=(100,)))
