"""``s3l cluster`` end to end on generated audio: label files, models, ensembles, --model, errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3l.checkpoint import read_metadata
from s3l.cluster import ClusterConfig, run_cluster
from s3l.cluster.features import mfcc, mfcc_frames
from s3l.cluster.labels import load_kmeans, recorded_label_rate
from s3l.errors import S3LError
from s3l.manifest import read_dict, write_split


def _corpus(root: Path) -> Path:
    """train: 6 utterances, valid: 3; tones + noise of 0.3-1.5 s."""
    rng = np.random.default_rng(0)
    audio = root / "audio"
    audio.mkdir(parents=True)
    for split, n in (("train", 6), ("valid", 3)):
        rows = []
        for i in range(n):
            size = int(rng.integers(4800, 24000))
            t = np.arange(size) / 16000
            tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 1500) * t) * (t % 0.2 < 0.1)
            w = tone + 0.02 * rng.standard_normal(size)
            sf.write(audio / f"{split}{i}.wav", w.astype(np.float32), 16000)
            rows.append((f"{split}{i}.wav", size))
        write_split(root, split, audio, rows)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _corpus(tmp_path_factory.mktemp("corpus"))


def _cfg(data: Path, out: Path, **kw) -> ClusterConfig:
    return ClusterConfig(data=data, out=out, device="cpu", **{"ks": (8,), **kw})


def _km(path: Path) -> list[list[int]]:
    return [[int(t) for t in line.split()] for line in path.read_text().splitlines()]


def _sizes(data: Path, split: str) -> list[int]:
    return [int(line.split("\t")[1]) for line in (data / f"{split}.tsv").read_text().splitlines()[1:]]


def _waves(data: Path, split: str) -> list[np.ndarray]:
    lines = (data / f"{split}.tsv").read_text().splitlines()
    return [sf.read(Path(lines[0]) / line.split("\t")[0], dtype="float32")[0] for line in lines[1:]]


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("km")
    return out, run_cluster(_cfg(data, out))


def test_mfcc_run_writes_label_files(data, fitted) -> None:
    out, summary = fitted
    for split in ("train", "valid"):
        lines = _km(out / f"{split}.km")
        assert [len(ids) for ids in lines] == [mfcc_frames(n) for n in _sizes(data, split)]  # 100 Hz
        assert all(0 <= t < 8 for ids in lines for t in ids)
    counts = [line.split() for line in (out / "dict.km.txt").read_text().splitlines()]
    assert [c[0] for c in counts] == [str(i) for i in range(8)] == read_dict(out / "dict.km.txt")
    fit_frames = sum(mfcc_frames(n) for n in _sizes(data, "train"))
    assert sum(int(c[1]) for c in counts) == summary["fit"]["frames"] == fit_frames
    info = json.loads((out / "labels.json").read_text())
    assert (info["label_rate"], info["feature"], info["k"]) == (100, "mfcc", 8)
    meta = read_metadata(out / "kmeans.safetensors")
    assert meta["kind"] == "kmeans" and meta["feature"] == "mfcc" and meta["label_rate"] == 100
    assert meta["fit"]["split"] == "train" and meta["fit"]["utterances"] == 6
    assert summary["label_sets"][0]["used_clusters"] <= 8 and not (out / "feats").exists()
    assert json.loads((out / "summary.json").read_text())["splits"]["valid"]["utterances"] == 3


def test_the_recorded_label_rate_has_one_reader(fitted, tmp_path) -> None:
    """labels.json says the rate, else kmeans.safetensors; neither: None; a bad value names its file."""
    out, _ = fitted
    assert recorded_label_rate(out) == (100.0, out / "labels.json")
    model_only = tmp_path / "model-only"
    model_only.mkdir()
    (model_only / "kmeans.safetensors").write_bytes((out / "kmeans.safetensors").read_bytes())
    assert recorded_label_rate(model_only) == (100.0, model_only / "kmeans.safetensors")
    assert recorded_label_rate(tmp_path) is None
    (tmp_path / "labels.json").write_text(json.dumps({"label_rate": True, "files": {}}))
    with pytest.raises(S3LError, match=r"labels.json: recorded label rate True is not a positive number of Hz"):
        recorded_label_rate(tmp_path)
    (tmp_path / "labels.json").write_text("[1, 2]")
    with pytest.raises(S3LError, match=r"labels.json: not a labels.json written by `s3l cluster`"):
        recorded_label_rate(tmp_path)


def test_labels_are_nearest_centroids_of_direct_mfcc(data, fitted) -> None:
    out, _ = fitted
    c = torch.from_numpy(load_kmeans(out / "kmeans.safetensors").centroids).double()
    for wave, ids in zip(_waves(data, "valid"), _km(out / "valid.km")):
        want = torch.cdist(mfcc(wave).double(), c).argmin(1).tolist()
        assert ids == want


def test_model_reapplication_gives_identical_labels(data, fitted, tmp_path) -> None:
    out, _ = fitted
    run_cluster(_cfg(data, tmp_path, models=(out / "kmeans.safetensors",), label_splits=("valid", "train")))
    for split in ("train", "valid"):
        assert (tmp_path / f"{split}.km").read_text() == (out / f"{split}.km").read_text()
    assert (tmp_path / "dict.km.txt").read_text() == (out / "dict.km.txt").read_text()
    assert (tmp_path / "kmeans.safetensors").read_bytes() == (out / "kmeans.safetensors").read_bytes()
    # in the model's own directory (dict.km.txt, labels.json there already): no --force needed for new splits
    own = tmp_path / "own"
    own.mkdir()
    for name in ("kmeans.safetensors", "dict.km.txt", "labels.json"):
        (own / name).write_bytes((out / name).read_bytes())
    run_cluster(_cfg(data, own, models=(own / "kmeans.safetensors",), label_splits=("valid",)))
    assert (own / "valid.km").read_text() == (out / "valid.km").read_text()


def test_machine_shards_join_into_the_full_file(data, fitted, tmp_path) -> None:
    out, _ = fitted
    for i in (1, 0):
        run_cluster(_cfg(data, tmp_path, models=(out / "kmeans.safetensors",), label_splits=("train",),
                         shard=i, num_shards=2))
    assert len(_km(tmp_path / "train_0_2.km")) == 3
    assert (tmp_path / "train.km").read_text() == (out / "train.km").read_text()


def test_ensemble_and_product_label_sets(data, tmp_path) -> None:
    summary = run_cluster(_cfg(data, tmp_path, ks=(4, 6), product=("static", "delta", "ddelta"),
                               label_splits=("valid",), keep_features=True))
    names = sorted(s["name"] for s in summary["label_sets"])
    assert names == sorted(f"k{k}-{s}" for k in (4, 6) for s in ("static", "delta", "ddelta"))
    m = load_kmeans(tmp_path / "k6-delta" / "kmeans.safetensors")
    assert m.centroids.shape == (6, 13) and m.label_set.cols == (13, 26)
    feats = np.load(tmp_path / "feats" / "train_0_1.npy")
    assert feats.shape == (summary["fit"]["frames"], 39)
    lines = _km(tmp_path / "k6-delta" / "valid.km")
    c = torch.from_numpy(m.centroids).double()
    for wave, ids in zip(_waves(data, "valid"), lines):
        assert ids == torch.cdist(mfcc(wave)[:, 13:26].double(), c).argmin(1).tolist()


def test_sample_pct_is_seeded(data, tmp_path) -> None:
    a = run_cluster(_cfg(data, tmp_path / "a", sample_pct=50, seed=3, label_splits=()))
    run_cluster(_cfg(data, tmp_path / "b", sample_pct=50, seed=3, label_splits=()))
    sizes = _sizes(data, "train")
    picked = np.sort(np.random.default_rng(3).choice(6, 3, replace=False))
    assert a["fit"]["utterances"] == 3 and a["fit"]["frames"] == sum(mfcc_frames(sizes[i]) for i in picked)
    ca, cb = (load_kmeans(tmp_path / x / "kmeans.safetensors").centroids for x in "ab")
    np.testing.assert_array_equal(ca, cb)


def test_overwrite_protection(data, tmp_path) -> None:
    cfg = _cfg(data, tmp_path, ks=(3,), label_splits=("valid",))
    run_cluster(cfg)
    with pytest.raises(S3LError, match="already exists"):
        run_cluster(cfg)
    run_cluster(replace(cfg, force=True))


@pytest.mark.parametrize("kw, match", [
    (dict(fit_split="nope"), "split 'nope' not found"),
    (dict(label_splits=("valid", "test")), "split 'test' not found"),
    (dict(ks=(100_000,)), "fewer than K=100000"),
    (dict(sample_pct=0), "--sample-pct"),
    (dict(num_shards=2), "needs --model"),
    (dict(feature="layer"), "--checkpoint"),
    (dict(feature="layer", checkpoint=Path("/nonexistent.safetensors"), layer=1), "checkpoint not found"),
    (dict(product=("0:50",)), "out-of-range"),
    (dict(algo="faiss"), "--algo"),
])
def test_user_errors(data, tmp_path, kw, match) -> None:
    with pytest.raises(S3LError, match=match):
        run_cluster(_cfg(data, tmp_path, **kw))


def test_mismatched_model_errors(data, fitted, tmp_path) -> None:
    out, _ = fitted
    model = (out / "kmeans.safetensors",)
    with pytest.raises(S3LError, match="fit on mfcc features, not --feature layer"):
        run_cluster(_cfg(data, tmp_path, models=model, feature="layer"))
    other = tmp_path / "not-kmeans.safetensors"
    from s3l.checkpoint import save_checkpoint

    save_checkpoint(other, {"w": torch.zeros(2)}, kind="hubert")
    with pytest.raises(S3LError, match="not a k-means model"):
        run_cluster(_cfg(data, tmp_path, models=(other,)))


def test_cli_runs_and_reports_errors(data, tmp_path) -> None:
    import subprocess
    import sys

    ok = subprocess.run([sys.executable, "-m", "s3l", "cluster", "--data", str(data), "--out", str(tmp_path),
                         "--k", "5", "--label-splits", "valid", "--device", "cpu"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "k-means on mfcc" in ok.stdout and len(_km(tmp_path / "valid.km")) == 3
    bad = subprocess.run([sys.executable, "-m", "s3l", "cluster", "--data", str(data), "--out", str(tmp_path),
                          "--k", "5,x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--k" in bad.stderr and "Traceback" not in bad.stderr


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in the code under test catches it."""


def _phones(data: Path, split: str, out: Path) -> Path:
    """A .phn file at 100 Hz with one phone per frame of each utterance (any content: only the reader matters)."""
    lines = [" ".join("a" for _ in range(mfcc_frames(n))) for n in _sizes(data, split)]
    path = out / f"{split}.phn"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_killed_force_run_is_refused_then_rerun_completes(data, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from s3l.cli import app
    from s3l.cluster import run as cluster_run
    from s3l.cluster.labels import require_complete

    out, ref = tmp_path / "km", tmp_path / "ref"
    run_cluster(_cfg(data, out, ks=(3,)))
    old_valid = (out / "valid.km").read_text()
    assert require_complete(out, ["train.km", "valid.km", "dict.km.txt"])["k"] == 3

    real_save, real_check = cluster_run.save_kmeans, cluster_run.check_km
    seen: list[bool] = []

    def save_after_invalidating(path, *a, **kw):
        seen.append((out / "labels.json").exists())  # the old set must be invalid before the first new file
        real_save(path, *a, **kw)

    def killed_after_first_km(path, *a, **kw):
        real_check(path, *a, **kw)
        raise _Killed

    monkeypatch.setattr(cluster_run, "save_kmeans", save_after_invalidating)
    monkeypatch.setattr(cluster_run, "check_km", killed_after_first_km)
    new = _cfg(data, out, ks=(5,))
    with pytest.raises(_Killed):
        run_cluster(replace(new, force=True))
    monkeypatch.undo()
    assert seen == [False]
    # the mixed set a kill leaves: the new model and train.km, the old valid.km and dict.km.txt, no labels.json
    assert load_kmeans(out / "kmeans.safetensors").centroids.shape[0] == 5
    assert max(max(ids) for ids in _km(out / "train.km")) >= 3
    assert (out / "valid.km").read_text() == old_valid and len(read_dict(out / "dict.km.txt")) == 3
    assert not (out / "labels.json").exists() and (out / "labels.incomplete").exists()
    for names in (["valid.km"], ["train.km", "dict.km.txt"]):
        with pytest.raises(S3LError, match=rf"^{out}: incomplete label set .*rerun the `s3l cluster` command"):
            require_complete(out, names)
    res = CliRunner().invoke(app, ["analyze-units", "--units", str(out / "valid.km"),
                                   "--phones", str(_phones(data, "valid", tmp_path)), "--out", str(tmp_path / "r")])
    assert isinstance(res.exception, S3LError) and "incomplete label set" in str(res.exception)
    assert "\n" not in str(res.exception)

    run_cluster(new)  # the same command again, without --force: the interrupted run's files are replaced
    run_cluster(replace(new, out=ref))  # an uninterrupted run
    assert not (out / "labels.incomplete").exists()
    for name in ("train.km", "valid.km", "dict.km.txt"):
        assert (out / name).read_text() == (ref / name).read_text()
    np.testing.assert_array_equal(load_kmeans(out / "kmeans.safetensors").centroids,
                                  load_kmeans(ref / "kmeans.safetensors").centroids)
    info = require_complete(out, ["train.km", "valid.km", "dict.km.txt"])
    assert info["k"] == 5 and sorted(info["files"]) == ["dict.km.txt", "kmeans.safetensors", "train.km", "valid.km"]
    with pytest.raises(S3LError, match="already exists; pass --force"):  # a complete set still needs --force
        run_cluster(new)


def test_files_outside_the_listed_set_are_refused(data, tmp_path) -> None:
    from s3l.cluster.labels import require_complete

    run_cluster(_cfg(data, tmp_path, ks=(3,)))
    run_cluster(_cfg(data, tmp_path, ks=(4,), label_splits=("train",), force=True))  # valid.km is the old K=3 one
    require_complete(tmp_path, ["train.km", "dict.km.txt"])
    with pytest.raises(S3LError, match=rf"^{tmp_path / 'valid.km'}: not part of the label set"):
        require_complete(tmp_path, ["valid.km"])
    (tmp_path / "train.km").write_text((tmp_path / "train.km").read_text().replace("1", "2"))
    with pytest.raises(S3LError, match=rf"^{tmp_path / 'train.km'}: not the file .*labels.json lists"):
        require_complete(tmp_path, ["train.km"])
    (tmp_path / "labels.json").unlink()
    with pytest.raises(S3LError, match=r"incomplete label set \(kmeans.safetensors but no labels.json\).*--force"):
        require_complete(tmp_path, ["train.km"])
    assert require_complete(tmp_path / "nothing", ["x.km"]) is None  # not written by s3l cluster (e.g. fairseq)


def test_machine_shards_ignore_parts_of_another_model(data, fitted, tmp_path) -> None:
    out, _ = fitted
    other = tmp_path / "other"
    run_cluster(_cfg(data, other, ks=(3,), label_splits=()))
    shard = dict(label_splits=("train",), num_shards=2)
    run_cluster(_cfg(data, tmp_path / "m", models=(other / "kmeans.safetensors",), shard=1, **shard))
    # machine 0 labels with another model (after --force): machine 1's part is not joined to it
    run_cluster(_cfg(data, tmp_path / "m", models=(out / "kmeans.safetensors",), shard=0, force=True, **shard))
    assert not (tmp_path / "m" / "train.km").exists()
    run_cluster(_cfg(data, tmp_path / "m", models=(out / "kmeans.safetensors",), shard=1, force=True, **shard))
    assert (tmp_path / "m" / "train.km").read_text() == (out / "train.km").read_text()
