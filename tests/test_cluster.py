"""s3l.cluster building blocks: MFCC features, memory-mapped shards, the k-means engines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from s3l.cluster import kmeans as km
from s3l.cluster.features import MFCC_SUBSPACES, layer_frames, mfcc, mfcc_frames
from s3l.cluster.labels import parse_subspaces, plan_label_sets
from s3l.cluster.store import FeatureStore, shard_stem, write_shard
from s3l.errors import S3LError

# ------------------------------------------------------------------------------------------------- MFCC


def _deltas(c: np.ndarray) -> np.ndarray:
    """Regression deltas over time (axis 0), window 5, edges replicated: sum_k k (c[t+k] - c[t-k]) / 10."""
    p = np.concatenate([c[:1], c[:1], c, c[-1:], c[-1:]])
    t = len(c)
    return sum(k * (p[2 + k: 2 + k + t] - p[2 - k: 2 - k + t]) for k in (1, 2)) / 10.0


@pytest.mark.parametrize("n", [400, 559, 560, 16000, 23456])
def test_mfcc_matches_kaldi_and_hand_deltas(n: int) -> None:
    wave = (0.3 * np.sin(np.arange(n) * 0.05) + 0.01 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    feats = mfcc(wave).numpy()
    assert feats.shape == (1 + (n - 400) // 160, 39) == (mfcc_frames(n), 39)
    static = torchaudio.compliance.kaldi.mfcc(torch.from_numpy(wave)[None], sample_frequency=16000,
                                              use_energy=False).numpy()
    np.testing.assert_array_equal(feats[:, :13], static)
    d = _deltas(static.astype(np.float64))
    np.testing.assert_allclose(feats[:, 13:26], d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(feats[:, 26:], _deltas(d), rtol=1e-4, atol=1e-4)


def test_frame_counts() -> None:
    assert [mfcc_frames(n) for n in (399, 400, 559, 560)] == [0, 1, 1, 2]
    for n in (400, 719, 720, 16000, 160_123):
        assert layer_frames(n) == 1 + (n - 400) // 320


# ------------------------------------------------------------------------------------------------ store


def _store(tmp_path, x: np.ndarray, lengths: list[int], split: str = "train") -> FeatureStore:
    stem = shard_stem(tmp_path, split, 0, 1)
    offsets = np.cumsum([0, *lengths])
    write_shard(stem, x.shape[1], len(x), ((10 + u, x[offsets[u]:offsets[u + 1]]) for u in range(len(lengths))))
    return FeatureStore.open([stem])


def test_store_roundtrip_chunks_take_and_cache(tmp_path) -> None:
    x = np.random.default_rng(0).standard_normal((103, 5)).astype(np.float32)
    st = _store(tmp_path, x, [40, 0, 33, 30], split="dev.clean")
    assert (st.num_rows, st.dim, len(st)) == (103, 5, 4)
    np.testing.assert_array_equal(np.load(tmp_path / "dev.clean_0_1.npy"), x)  # a plain .npy file
    blocks = list(st.chunks(7))
    assert max(len(b) for b in blocks) == 7
    np.testing.assert_array_equal(np.concatenate(blocks), x)
    np.testing.assert_array_equal(np.concatenate(list(st.chunks(10, cols=(1, 3)))), x[:, 1:3])
    rows = np.array([0, 6, 7, 50, 102])
    np.testing.assert_array_equal(st.take(rows, 7), x[rows])
    np.testing.assert_array_equal(st[12], x[40:73])
    assert 11 in st and st[11].shape == (0, 5) and 14 not in st


# ----------------------------------------------------------------------------------------------- k-means


def _blobs(n_per: int = 400, k: int = 8, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-20, 20, (k, d))
    y = np.repeat(np.arange(k), n_per)
    x = centers[y] + rng.standard_normal((len(y), d))
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_assign_equals_brute_force() -> None:
    x = torch.randn(300, 7)
    c = torch.randn(9, 7)
    labels, dmin = km.assign(x, c, c.pow(2).sum(1))
    full = torch.cdist(x.double(), c.double()).pow(2)
    assert torch.equal(labels, full.argmin(1))
    torch.testing.assert_close(dmin.double(), full.min(1).values, rtol=1e-4, atol=1e-4)


def test_lloyd_recovers_blobs_and_matches_sklearn(tmp_path) -> None:
    from sklearn.cluster import KMeans

    x, y = _blobs()
    st = _store(tmp_path, x, [len(x)])
    fit = km.fit_lloyd(st, 8, seed=0)
    labels, _ = km.assign(torch.from_numpy(x), torch.from_numpy(fit.centroids),
                          torch.from_numpy(fit.centroids).pow(2).sum(1))
    assert _same_partition(labels.numpy(), y)
    assert fit.converged and fit.counts.sum() == len(x) and sorted(fit.counts) == [400] * 8
    ref = KMeans(8, n_init=10, random_state=0).fit(x)
    assert abs(fit.inertia - ref.inertia_ / len(x)) <= 0.01 * ref.inertia_ / len(x)
    assert fit.inertia == pytest.approx(km.evaluate(st, fit.centroids)[0], rel=1e-5)


def test_sklearn_paper_engine(tmp_path) -> None:
    x, y = _blobs(n_per=200)
    st = _store(tmp_path, x, [len(x)])
    fit = km.fit_sklearn_minibatch(st, 8, seed=0)
    lloyd = km.fit_lloyd(st, 8, seed=0)
    assert fit.algo == "sklearn-minibatch" and fit.centroids.shape == (8, 6)
    assert abs(fit.inertia - lloyd.inertia) <= 0.01 * lloyd.inertia
    assert km.PAPER_MINIBATCH["batch_size"] == 10000 and km.PAPER_MINIBATCH["n_init"] == 20


def test_streaming_with_tiny_memory_cap_equals_one_chunk(tmp_path) -> None:
    x, _ = _blobs(n_per=300, k=6, d=5, seed=1)
    x[:, 0] += np.random.default_rng(3).standard_normal(len(x)).astype(np.float32) * 8  # overlapping clusters
    st = _store(tmp_path, x, [700, 500, 600])
    tiny = (64 << 20) + 6 * 5 * 24 + 50 * (8 * 5 + 8 * 6 + 32)  # the fixed part + 50 rows per chunk
    assert km.chunk_rows(tiny, 6, 5) == 50
    one = km.fit_lloyd(st, 6, seed=3, tol=0.0, max_iter=30)
    many = km.fit_lloyd(st, 6, seed=3, tol=0.0, max_iter=30, max_memory_bytes=tiny)
    np.testing.assert_allclose(many.centroids, one.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(many.counts, one.counts)
    assert many.inertia == pytest.approx(one.inertia, rel=1e-6) and many.n_iter == one.n_iter > 1


def test_product_columns(tmp_path) -> None:
    x, y = _blobs(n_per=100, k=4, d=6)
    x[:, 3:] = np.random.default_rng(5).standard_normal((len(x), 3))  # only columns 0:3 carry clusters
    st = _store(tmp_path, x, [len(x)])
    fit = km.fit_lloyd(st, 4, cols=(0, 3), seed=0)
    assert fit.centroids.shape == (4, 3)
    c = torch.from_numpy(fit.centroids)
    labels, _ = km.assign(torch.from_numpy(x[:, :3].copy()), c, c.pow(2).sum(1))
    assert _same_partition(labels.numpy(), y)


def test_empty_cluster_moves_to_farthest_point() -> None:
    cents = torch.tensor([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]])
    stats = km._Stats(sums=torch.tensor([[2.0, 2.0], [10.0, 12.0], [0.0, 0.0]], dtype=torch.float64),
                      counts=torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64), inertia=1.0,
                      far_d=torch.tensor([3.0, 9.0]), far_x=torch.tensor([[1.0, 1.0], [7.0, 9.0]]))
    new = km._update(cents, stats)
    torch.testing.assert_close(new, torch.tensor([[1.0, 1.0], [5.0, 6.0], [7.0, 9.0]]))


def test_kmeans_pp_is_seeded_and_picks_data_points() -> None:
    x = torch.from_numpy(_blobs(n_per=50)[0])
    a = km.kmeans_pp(x, 8, torch.Generator().manual_seed(1))
    b = km.kmeans_pp(x, 8, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert all(bool((x == row).all(1).any()) for row in a)
    dup = km.kmeans_pp(torch.ones(20, 3), 4, torch.Generator().manual_seed(0))  # fewer distinct points than K
    assert torch.equal(dup, torch.ones(4, 3))


def test_kmeans_user_errors(tmp_path) -> None:
    x, _ = _blobs(n_per=2, k=3)
    st = _store(tmp_path, x, [len(x)])
    with pytest.raises(S3LError, match="fewer than K=10"):
        km.fit_lloyd(st, 10)
    with pytest.raises(S3LError, match="--max-memory"):
        km.chunk_rows(1 << 20, 500, 768)


def test_label_set_planning() -> None:
    assert [s.name for s in plan_label_sets([100], [])] == [""]
    sets = plan_label_sets([50, 100], parse_subspaces(["static", "ddelta"], "mfcc", 39))
    assert [s.name for s in sets] == ["k50-static", "k50-ddelta", "k100-static", "k100-ddelta"]
    assert sets[1].cols == MFCC_SUBSPACES["ddelta"] == (26, 39)
    assert parse_subspaces(["0:384", "384:768"], "layer", 768)[1] == ("d384-768", (384, 768))
    for bad, feature in (("static", "layer"), ("5:5", "mfcc"), ("0:40", "mfcc"), ("foo", "mfcc")):
        with pytest.raises(S3LError, match="--product"):
            parse_subspaces([bad], feature, None)
    with pytest.raises(S3LError, match="--k"):
        plan_label_sets([0], [])
