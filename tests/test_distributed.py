"""The shared launcher: multi-process commands exit cleanly every time (no SIGABRT at interpreter teardown),
``--nproc`` stripping, sharding, and the worker exit path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cluster_run import _corpus as cluster_corpus
from test_decode import FALLBACK_DISCOUNTS, LM_TEXT, _corpus, _save_fake_emissions

from s3l import distributed
from s3l.lm import estimate, write_arpa
from s3l.manifest import load_split

RUNS = 3  # the abort hit about one run in tens: several in a row, each must exit cleanly


def _clean(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}  # an abort would print its stack
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    for sign in ("terminate called", "Fatal Python error", "Traceback", "exitcode"):
        assert sign not in r.stderr, r.stderr[-3000:]
    return r


def test_two_process_decode_and_cluster_exit_cleanly_every_time(tmp_path: Path) -> None:
    data, words = _corpus(tmp_path, 6)
    arpa = tmp_path / "lm.arpa"
    write_arpa(estimate([s.split() for s in LM_TEXT], 3, FALLBACK_DISCOUNTS), arpa)
    _save_fake_emissions(tmp_path / "em", "test", words, list(load_split(data, "test").manifest.sizes))
    audio = cluster_corpus(tmp_path / "cl")
    hyps = set()
    for i in range(RUNS):
        _clean([sys.executable, "-m", "s3l", "decode", "--data", str(data), "--split", "test", "--out",
                str(tmp_path / f"hyp{i}"), "--emissions", str(tmp_path / "em"), "--lm", str(arpa), "--beam", "8",
                "--nproc", "2"])
        hyps.add((tmp_path / f"hyp{i}" / "test.hyp").read_text())
        _clean([sys.executable, "-m", "s3l", "cluster", "--data", str(audio), "--out", str(tmp_path / f"km{i}"),
                "--k", "5", "--nproc", "2", "--device", "cpu"])
    assert hyps == {"".join(w + "\n" for w in words)}  # and every run produced the right output
    assert len({(tmp_path / f"km{i}" / "train.km").read_text() for i in range(RUNS)}) == 1


def test_strip_nproc_and_shards() -> None:
    assert distributed._strip_nproc(["decode", "--nproc", "2", "--x", "1", "--nproc=3"]) == ["decode", "--x", "1"]
    parts = [distributed.shard(10, r, 3) for r in range(3)]
    assert [list(p) for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_exit_process_outside_a_worker_is_sys_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(SystemExit) as e:
        distributed.exit_process(3)
    assert e.value.code == 3


def test_a_worker_error_is_printed_once_by_the_launcher(tmp_path: Path) -> None:
    data, _ = _corpus(tmp_path, 2)
    cmd = [sys.executable, "-m", "s3l", "decode", "--data", str(data), "--split", "test", "--out",
           str(tmp_path / "hyp"), "--emissions", str(tmp_path), "--nproc", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'test.emissions.npz'}: emissions not found (write them with `s3l decode "
        "--save-emissions`)"], r.stderr
    assert not (tmp_path / "hyp").exists()
