"""k-means over streamed features: a torch Lloyd engine and the HuBERT paper's scikit-learn configuration.

The default engine (``lloyd``): greedy k-means++ (as scikit-learn seeds, 2 + ln K local trials) on a sample,
then exact Lloyd iterations. Each iteration streams the memory-mapped features in chunks whose size follows
from ``max_memory``; a chunk's squared distances to all centroids are one ``addmm`` (matrix product), the
per-cluster sums an ``index_add_``. Across processes the sums, counts and inertia are all-reduced, so N
processes compute exactly the update one process would. Clusters left empty are moved to the points farthest
from their centroid. It stops when an iteration lowers the inertia by less than ``tol`` (relative) or after
``max_iter`` updates, and returns the centroids whose inertia it measured last.

``sklearn-minibatch`` is fairseq's ``examples/hubert/simple_kmeans/learn_kmeans.py`` configuration, which loads
every sampled frame into RAM; it is kept to compare against.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from s3l import distributed as dist
from s3l.cluster.threads import bounded_map, cpu_workers, single_threaded
from s3l.errors import S3LError

if TYPE_CHECKING:
    import torch

    from s3l.cluster.store import FeatureStore

ALGOS = ("lloyd", "sklearn-minibatch")
# fairseq examples/hubert/simple_kmeans/learn_kmeans.py defaults (HuBERT paper, §IV-C): k-means++ init,
# 20 restarts, mini-batches of 10,000 frames, 100 epochs, stop after 100 batches without improvement,
# no reassignment of small clusters, no tolerance-based stop, init_size=None (= 3 * batch_size).
PAPER_MINIBATCH = dict(init="k-means++", max_iter=100, batch_size=10000, compute_labels=False, tol=0.0,
                       max_no_improvement=100, init_size=None, n_init=20, reassignment_ratio=0.0)
# k-means++ runs on a random sample of INIT_PER_CLUSTER * K frames (at least INIT_MIN, at most all of them).
INIT_PER_CLUSTER = 20
INIT_MIN = 10_000
# Stop when an iteration lowers the inertia by less than 0.1 %: on 200k MFCC (K=100) and 768-dim (K=500) frames
# that is 12-14 iterations and an inertia 0.8-0.9 % above full convergence, still 1-2 % below the paper's
# MiniBatchKMeans (recipes/benchmarks/bench_cluster.py); 1e-4 takes 32-39 iterations for another 0.7 %.
DEFAULT_TOL = 1e-3
# On CPU, larger chunks than this gain nothing (the (rows, K) distance block stops fitting in cache).
CPU_MAX_ROWS = 1 << 16


@dataclass(frozen=True)
class KMeansFit:
    centroids: np.ndarray  # (K, d) float32
    inertia: float  # mean squared Euclidean distance of a frame to its centroid
    counts: np.ndarray  # (K,) frames assigned to each centroid
    n_iter: int  # centroid updates (Lloyd iterations, or mini-batch steps for scikit-learn)
    converged: bool
    seconds: float
    num_frames: int
    algo: str


def chunk_rows(max_memory_bytes: float, k: int, d: int) -> int:
    """Rows per chunk so that one chunk's working set stays under ``max_memory_bytes``.

    Fixed: centroids, their float64 sums and a relocation buffer, ~K*d*24 bytes. Per row: the float32 chunk
    (d*4, twice for the column copy or device transfer) and its distances to every centroid (K*4, twice for the
    ``addmm`` result and ``min``'s temporary), plus labels and minima.
    """
    fixed = k * d * 24 + (64 << 20)  # + the interpreter/torch working margin
    per_row = 8 * d + 8 * k + 32
    rows = int((max_memory_bytes - fixed) // per_row)
    if rows < 1:
        need = (fixed + per_row * 256) / 2**30
        raise S3LError(f"--max-memory {max_memory_bytes / 2**30:.3g} GB is too small for K={k} x {d} dims; "
                       f"use at least {need:.2g}")
    return rows


def assign(x: torch.Tensor, centroids: torch.Tensor, c_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of each row: labels (n,) long and squared distances (n,) float32 (clamped at 0)."""
    import torch

    # ||x - c||^2 = ||x||^2 + (||c||^2 - 2 x.c); the argmin needs only the bracket, one fused matrix product.
    part = torch.addmm(c_norm.unsqueeze(0), x, centroids.t(), alpha=-2.0)  # (n, K)
    best, labels = part.min(dim=1)
    return labels, (best + x.pow(2).sum(1)).clamp_min_(0.0)


def kmeans_pp(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Greedy k-means++ seeding of (n, d) ``x`` (Arthur & Vassilvitskii 2007; scikit-learn's local trials)."""
    import torch

    n = x.shape[0]
    trials = 2 + int(math.log(k))
    x_norm = x.pow(2).sum(1)  # (n,)

    def sq_dist(rows: torch.Tensor) -> torch.Tensor:  # (m, d) -> (m, n)
        return torch.addmm(x_norm.unsqueeze(0) + rows.pow(2).sum(1, keepdim=True), rows, x.t(),
                           alpha=-2.0).clamp_min_(0.0)

    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=gen))
    centers[0] = x[first]
    closest = sq_dist(x[first:first + 1])[0]  # (n,)
    for c in range(1, k):
        pot = closest.double().cumsum(0)
        if float(pot[-1]) <= 0.0:  # fewer distinct points than clusters: duplicates are all that is left
            cand = torch.randint(n, (trials,), generator=gen).to(x.device)
        else:
            r = torch.rand(trials, generator=gen, dtype=torch.float64).to(x.device) * pot[-1]
            cand = torch.searchsorted(pot, r).clamp_(max=n - 1)
        new_closest = torch.minimum(closest.unsqueeze(0), sq_dist(x[cand]))  # (trials, n)
        best = int(new_closest.double().sum(1).argmin())
        centers[c] = x[cand[best]]
        closest = new_closest[best]
    return centers


@dataclass
class _Stats:
    sums: torch.Tensor  # (K, d) float64
    counts: torch.Tensor  # (K,) float64
    inertia: float  # total (not mean)
    far_d: torch.Tensor  # (m,) largest distances seen, for empty-cluster relocation
    far_x: torch.Tensor  # (m, d) the corresponding points


def _chunk_stats(x: torch.Tensor, centroids: torch.Tensor, c_norm: torch.Tensor, n_far: int) -> tuple:
    """E-step of one chunk x (n, d): per-cluster float32 sums (K, d), counts (K,), total inertia, farthest rows."""
    import torch

    k, d = centroids.shape
    labels, dmin = assign(x, centroids, c_norm)
    sums = torch.zeros(k, d, dtype=torch.float32, device=x.device).index_add_(0, labels, x)
    counts = torch.bincount(labels, minlength=k)
    top = torch.topk(dmin, min(n_far, len(dmin)))
    return sums, counts, dmin.double().sum(), top.values, x[top.indices]


def _pass(store: FeatureStore, cols: tuple[int, int] | None, centroids: torch.Tensor, rows: int,
          device: str, n_far: int) -> _Stats:
    """One streaming E-step over the local store (on CPU, chunks in parallel threads), all-reduced."""
    import torch

    k, d = centroids.shape
    sums = torch.zeros(k, d, dtype=torch.float64, device=device)
    counts = torch.zeros(k, dtype=torch.float64, device=device)
    inertia = torch.zeros((), dtype=torch.float64, device=device)
    far_d = torch.empty(0, device=device)
    far_x = torch.empty(0, d, device=device)
    c_norm = centroids.pow(2).sum(1)
    workers = cpu_workers() if device == "cpu" else 1
    # `workers` chunks are computed while the next one is read: together they stay within `rows`.
    blocks = store.chunks(max(1, rows // (workers + 1)) if workers > 1 else rows, cols)

    def stats(block):
        return _chunk_stats(torch.from_numpy(block).to(device), centroids, c_norm, n_far)

    with single_threaded() if workers > 1 else contextlib.nullcontext():
        for part, cnt, inert, top_d, top_x in bounded_map(stats, blocks, workers):  # reduced in chunk order
            sums += part
            counts += cnt
            inertia += inert
            if n_far:
                far_d = torch.cat([far_d, top_d])
                far_x = torch.cat([far_x, top_x])
                if len(far_d) > n_far:
                    keep = torch.topk(far_d, n_far).indices
                    far_d, far_x = far_d[keep], far_x[keep]
    for t in (sums, counts, inertia):
        dist.all_reduce_tensor_(t)
    if n_far and _world() > 1:  # pool the processes' relocation candidates
        pooled = dist.gather_objects((far_d.cpu(), far_x.cpu()))
        far_d = torch.cat([p[0] for p in pooled]).to(device)
        far_x = torch.cat([p[1] for p in pooled]).to(device)
    return _Stats(sums=sums, counts=counts, inertia=float(inertia), far_d=far_d, far_x=far_x)


def fit_lloyd(store: FeatureStore, k: int, *, cols: tuple[int, int] | None = None, max_iter: int = 100,
              tol: float = DEFAULT_TOL, seed: int = 0, device: str = "cpu", max_memory_bytes: float = 2 * 2**30,
              on_iter: Callable[[int, float], None] | None = None) -> KMeansFit:
    """Fit K centroids to the rows of ``store`` (all processes' stores together when distributed)."""
    t0 = time.perf_counter()
    d = (cols[1] - cols[0]) if cols else store.dim
    total = int(dist.all_reduce_sum([float(store.num_rows)])[0])
    if total < k:
        raise S3LError(f"the fit sample has {total} frames, fewer than K={k} clusters; raise --sample-pct")
    rows = chunk_rows(max_memory_bytes, k, d)
    if device == "cpu":
        rows = min(rows, CPU_MAX_ROWS)
    centroids = _init_centroids(store, k, cols, total, rows, seed, device)
    prev = math.inf
    it = 0
    converged = False
    while True:
        stats = _pass(store, cols, centroids, rows, device, n_far=k)
        inertia = stats.inertia / total
        if on_iter:
            on_iter(it, inertia)
        if prev < math.inf and (prev - inertia) <= tol * prev and int((stats.counts == 0).sum()) == 0:
            converged = True
            break
        if it == max_iter:
            break
        centroids = _update(centroids, stats)
        prev = inertia
        it += 1
    return KMeansFit(centroids=centroids.float().cpu().numpy(), inertia=inertia,
                     counts=stats.counts.cpu().numpy().astype(np.int64), n_iter=it, converged=converged,
                     seconds=time.perf_counter() - t0, num_frames=total, algo="lloyd")


def _init_centroids(store: FeatureStore, k: int, cols: tuple[int, int] | None, total: int, rows: int,
                    seed: int, device: str) -> torch.Tensor:
    """k-means++ on a seeded sample of global rows; processes own consecutive global row ranges (rank order)."""
    import torch

    n = min(total, max(INIT_MIN, INIT_PER_CLUSTER * k))
    picked = np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
    counts = dist.gather_objects(store.num_rows)
    start = sum(counts[: _rank()])
    mine = picked[(picked >= start) & (picked < start + store.num_rows)] - start
    local = store.take(mine, rows, cols)
    sample = np.concatenate(dist.gather_objects(local)) if len(counts) > 1 else local
    gen = torch.Generator().manual_seed(seed)
    # Each seeding step is a thin (trials, n) product that streams the whole sample: memory-bound, and slower
    # with intra-op threads than without.
    with single_threaded() if device == "cpu" else contextlib.nullcontext():
        return kmeans_pp(torch.from_numpy(sample).to(device), k, gen)


def _update(centroids: torch.Tensor, stats: _Stats) -> torch.Tensor:
    """M-step; empty clusters move to the farthest points (distinct ones, farthest first)."""
    import torch

    new = centroids.clone()
    used = stats.counts > 0
    new[used] = (stats.sums[used] / stats.counts[used].unsqueeze(1)).to(centroids.dtype)
    empty = torch.nonzero(~used).flatten()
    if len(empty) and len(stats.far_d):
        order = torch.argsort(stats.far_d, descending=True)[: len(empty)]
        new[empty[: len(order)]] = stats.far_x[order]
    return new


def _rank() -> int:
    import torch.distributed as tdist

    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def _world() -> int:
    import torch.distributed as tdist

    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def evaluate(store: FeatureStore, centroids: np.ndarray, cols: tuple[int, int] | None = None,
             device: str = "cpu", max_memory_bytes: float = 2 * 2**30) -> tuple[float, np.ndarray]:
    """Mean inertia and per-cluster counts of fixed centroids over the store (streaming)."""
    import torch

    c = torch.from_numpy(np.asarray(centroids, dtype=np.float32)).to(device)
    stats = _pass(store, cols, c, chunk_rows(max_memory_bytes, *c.shape), device, n_far=0)
    total = int(stats.counts.sum())
    return stats.inertia / max(total, 1), stats.counts.cpu().numpy().astype(np.int64)


def fit_sklearn_minibatch(store: FeatureStore, k: int, *, cols: tuple[int, int] | None = None, seed: int = 0,
                          max_memory_bytes: float = 2 * 2**30) -> KMeansFit:
    """The paper's MiniBatchKMeans on every row loaded into RAM (single process)."""
    from sklearn.cluster import MiniBatchKMeans

    t0 = time.perf_counter()
    x = store.load_all(cols)  # (N, d): the paper's recipe holds the whole sample in memory
    if len(x) < k:
        raise S3LError(f"the fit sample has {len(x)} frames, fewer than K={k} clusters; raise --sample-pct")
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, **PAPER_MINIBATCH).fit(x)
    del x
    centroids = km.cluster_centers_.astype(np.float32)
    inertia, counts = evaluate(store, centroids, cols, max_memory_bytes=max_memory_bytes)
    return KMeansFit(centroids=centroids, inertia=inertia, counts=counts, n_iter=int(km.n_steps_),
                     converged=int(km.n_steps_) < km.max_iter * math.ceil(store.num_rows / km.batch_size),
                     seconds=time.perf_counter() - t0, num_frames=store.num_rows, algo="sklearn-minibatch")
