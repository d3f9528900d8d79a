"""s3l.train.data: selection, bucketing by total samples, cropping with labels, resumable sharded order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from s3l.errors import S3LError
from s3l.manifest import read_manifest, write_manifest
from s3l.train.data import (
    PAD_LABEL,
    AudioDataset,
    BatchOrder,
    BatchSpec,
    Selection,
    batch_by_size,
    iterate,
    loader,
    read_frame_labels,
    read_token_labels,
    select,
)


def make_corpus(root: Path, sizes: list[int], seed: int = 0, name: str = "train") -> Path:
    """Write white-noise wavs of the given lengths and ``{name}.tsv``; returns the tsv path."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, n in enumerate(sizes):
        rel = f"wav/{name}{i:03d}.wav"
        sf.write(root / rel, (0.1 * rng.standard_normal(n)).astype(np.float32), 16000, subtype="FLOAT")
        rows.append((rel, n))
    write_manifest(root / f"{name}.tsv", root, rows)
    return root / f"{name}.tsv"


def write_km(root: Path, split: str, lines: list[str], k: int) -> None:
    (root / f"{split}.km").write_text("".join(ln + "\n" for ln in lines))
    (root / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))


def sel_of(sizes: list[int]) -> Selection:
    s = np.array(sizes)
    return Selection(indices=np.arange(len(s)), sizes=s, too_short=0, too_long=0)


def test_batch_by_size_hand_worked() -> None:
    sizes = [3, 10, 8, 2, 9, 3]
    batches = batch_by_size(sel_of(sizes), max_tokens=20, seed=0)
    # longest first: [10, 9] (2*10 = 20), [8, 3] (a third item: 3*8 > 20), [3, 2]
    assert [[sizes[i] for i in b] for b in batches] == [[10, 9], [8, 3], [3, 2]]
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for b in batches:
        assert len(b) * max(sizes[i] for i in b) <= 20


def test_batch_by_size_invariants_and_seeded_ties() -> None:
    rng = np.random.default_rng(1)
    sizes = list(rng.integers(1000, 5000, size=200))
    a = batch_by_size(sel_of(sizes), max_tokens=12000, seed=3)
    assert a == batch_by_size(sel_of(sizes), max_tokens=12000, seed=3)
    assert sorted(i for b in a for i in b) == list(range(200))
    assert all(len(b) * max(sizes[i] for i in b) <= 12000 for b in a)
    with pytest.raises(S3LError, match="does not fit --max-tokens 4000"):
        batch_by_size(sel_of(sizes), max_tokens=4000, seed=0)


def test_select_skips_and_caps(tmp_path: Path) -> None:
    m = read_manifest(make_corpus(tmp_path, [500, 3000, 9000, 20000]))
    s = select(m, min_sample_size=1000, max_sample_size=10000, crop=True)
    assert s.indices.tolist() == [1, 2, 3] and s.sizes.tolist() == [3000, 9000, 10000] and s.too_short == 1
    p = select(m, min_sample_size=1000, max_sample_size=10000, crop=False)
    assert p.indices.tolist() == [1, 2] and p.too_long == 1
    with pytest.raises(S3LError, match="no utterance left"):
        select(m, min_sample_size=30000, max_sample_size=40000, crop=True)


def test_batch_order_epochs_shards_and_resume() -> None:
    batches = [(i,) for i in range(7)]
    one = BatchOrder(batches, seed=5)
    assert sorted(one.batch_ids(1)) == list(range(7)) and one.batch_ids(1) != one.batch_ids(2)
    assert one.batch_ids(1) == BatchOrder(batches, seed=5).batch_ids(1)
    r0, r1 = (BatchOrder(batches, seed=5, rank=r, world=2) for r in (0, 1))
    assert len(r0) == len(r1) == 4
    ids0, ids1 = r0.batch_ids(1), r1.batch_ids(1)
    assert set(ids0) | set(ids1) == set(range(7))  # every batch, one wrapped around to even the count
    assert [b for pair in zip(ids0, ids1) for b in pair][:7] == one.batch_ids(1)
    assert r0.specs(3, start=2) == r0.specs(3)[2:]
    assert BatchOrder(batches, seed=5, shuffle=False).batch_ids(9) == list(range(7))


def _find(haystack: np.ndarray, needle: np.ndarray) -> int:
    for s in range(len(haystack) - len(needle) + 1):
        if np.array_equal(haystack[s : s + len(needle)], needle):
            return s
    raise AssertionError("crop not found in the source audio")


def test_crop_to_shortest_with_consistent_labels(tmp_path: Path) -> None:
    sizes = [16000, 12345, 20000]
    m = read_manifest(make_corpus(tmp_path, sizes))
    # 100 Hz labels whose value is the frame index (mod 500), so the label offset reveals itself
    write_km(tmp_path, "train", [" ".join(str(t % 500) for t in range(n // 160)) for n in sizes], k=500)
    km = read_frame_labels(tmp_path / "train.km", tmp_path / "dict.km.txt", m, rate=100)
    ds = AudioDataset(m, [km], crop=True, max_sample_size=100000, seed=7)
    spec = BatchSpec(epoch=1, batch_id=4, indices=(0, 1, 2))
    b = ds[spec]
    assert b.wave.shape == (3, 12345) and b.lengths.tolist() == [12345] * 3
    assert torch.equal(ds[spec].wave, b.wave)  # deterministic given (seed, epoch, batch id)
    assert not torch.equal(ds[BatchSpec(2, 4, (0, 1, 2))].wave, b.wave)  # another epoch, other offsets
    frm = round(12345 * 100 / 16000)
    for r, i in enumerate(spec.indices):
        start = _find(m.load(i), b.wave[r].numpy())
        lab_start = round(start * 100 / 16000)
        assert b.targets[0][r].tolist() == [t % 500 for t in range(lab_start, lab_start + frm)][: b.targets[0].shape[1]]
    assert b.targets[0].shape[1] in (frm, frm - 1)  # cut to what every row still has
    capped = AudioDataset(m, [], crop=True, max_sample_size=4000, seed=7)[spec]
    assert capped.wave.shape == (3, 4000)


def test_frame_label_errors(tmp_path: Path) -> None:
    m = read_manifest(make_corpus(tmp_path, [16000, 16000]))
    good = " ".join(["1"] * 100)
    write_km(tmp_path, "train", [good], k=4)
    with pytest.raises(S3LError, match=r"train\.km: 1 lines but .*train\.tsv lists 2"):
        read_frame_labels(tmp_path / "train.km", tmp_path / "dict.km.txt", m, rate=100)
    write_km(tmp_path, "train", [good, " ".join(["1"] * 50)], k=4)  # 1 s of audio, 0.5 s of labels
    with pytest.raises(S3LError, match=r"train\.km:2: 50 labels at 100 Hz .*train\.tsv:3\) lasts 1\.00 s.*50 Hz"):
        read_frame_labels(tmp_path / "train.km", tmp_path / "dict.km.txt", m, rate=100)
    write_km(tmp_path, "train", [good, " ".join(["1"] * 91)], k=4)  # 0.09 s short: within fairseq's tolerance
    assert len(read_frame_labels(tmp_path / "train.km", tmp_path / "dict.km.txt", m, rate=100).units[1]) == 91
    write_km(tmp_path, "train", [good, good.replace("1", "7", 1)], k=4)
    with pytest.raises(S3LError, match=r"train\.km:2: unit '7' is not in .*dict\.km\.txt"):
        read_frame_labels(tmp_path / "train.km", tmp_path / "dict.km.txt", m, rate=100)


def test_padded_batches_with_token_labels(tmp_path: Path) -> None:
    m = read_manifest(make_corpus(tmp_path, [800, 1200]))
    (tmp_path / "train.ltr").write_text("A B |\nB |\n")
    tok = read_token_labels(tmp_path / "train.ltr", m, ["<blank>", "|", "A", "B"])
    b = AudioDataset(m, [tok], crop=False, max_sample_size=10**6, seed=0)[BatchSpec(1, 0, (0, 1))]
    assert b.wave.shape == (2, 1200) and b.lengths.tolist() == [800, 1200]
    assert torch.equal(b.wave[0, :800], torch.from_numpy(m.load(0))) and b.wave[0, 800:].abs().sum() == 0
    assert b.targets[0].tolist() == [[2, 3, 1], [3, 1, PAD_LABEL]] and b.target_lengths[0].tolist() == [3, 2]
    (tmp_path / "train.ltr").write_text("A B |\nC |\n")
    with pytest.raises(S3LError, match=r"train\.ltr:2: symbol 'C'"):
        read_token_labels(tmp_path / "train.ltr", m, ["<blank>", "|", "A", "B"])


def test_loader_workers_same_batches_and_worker_errors(tmp_path: Path) -> None:
    m = read_manifest(make_corpus(tmp_path, [4000, 5000, 6000, 7000]))
    ds = AudioDataset(m, [], crop=True, max_sample_size=10**6, seed=1)
    specs = BatchOrder([(0, 1), (2, 3)], seed=1).specs(1)
    before = torch.get_rng_state()
    a = [b.wave for b in iterate(loader(ds, specs, 0))]
    b = [b.wave for b in iterate(loader(ds, specs, 2))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(before, torch.get_rng_state())  # making a loader leaves the global RNG alone
    sf.write(m.audio_path(2), np.zeros(100, dtype=np.float32), 16000)  # now disagrees with the manifest
    with pytest.raises(S3LError) as e:
        list(iterate(loader(ds, specs, 1)))
    assert "train.tsv:4:" in str(e.value) and "\n" not in str(e.value)
