"""``s3l cluster``: extract features, fit k-means (or load fitted models), write HuBERT unit label files.

Flow (the same code for one process and N processes of the shared launcher; only rank 0 writes shared files):

1. fit (unless ``--model``): sample ``--sample-pct`` of the fit split's utterances (seeded), each process extracts
   its contiguous part into ``{out}/feats/{split}_{rank}_{world}.npy`` (+ .len/.idx), then every label set is fit
   on all shards (Lloyd: data-parallel over the processes' shards; scikit-learn: rank 0 alone);
2. label: every label split is split over machines (``--shard/--num-shards``) and processes; features are
   extracted again on the fly (or read back from the fit shards) and assigned; rank 0 joins the parts;
3. finish: rank 0 writes dict.km.txt and labels.json (last) per label set, see labels.py "Crash consistency".
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s3l import distributed as dist
from s3l.audio import SAMPLE_RATE
from s3l.checkpoint import file_hash
from s3l.cluster import kmeans as km
from s3l.cluster.features import FEATURES, Extractor, FeatureSpec, iter_features, make_extractor
from s3l.cluster.labels import (
    DICT_FILE,
    INCOMPLETE,
    LABELS_JSON,
    MODEL_FILE,
    KMeansModel,
    LabelSet,
    check_km,
    concat_parts,
    file_entry,
    km_name,
    load_kmeans,
    merge_machine_shards,
    parse_subspaces,
    plan_label_sets,
    save_kmeans,
    start_set,
    still_valid,
    vouched_files,
    write_set_files,
)
from s3l.cluster.store import FeatureStore, shard_file, shard_stem, write_shard
from s3l.errors import S3LError
from s3l.fileio import atomic_write_text, check_overwrite, require_dir
from s3l.manifest import Manifest, load_split
from s3l.progress import progress

SUMMARY_VERSION = 1
LABEL_ROWS = 1 << 15  # frames assigned per matrix product when labelling (fewer if --max-memory demands)


@dataclass(frozen=True)
class ClusterConfig:
    data: Path  # directory with {split}.tsv manifests
    out: Path  # label directory (KMDIR)
    fit_split: str = "train"  # split whose utterances the k-means models are fit on
    label_splits: tuple[str, ...] | None = None  # splits to label; None = every {split}.tsv in data
    feature: str | None = None  # "mfcc" | "layer"; None = mfcc, or the --model's feature
    checkpoint: Path | None = None  # model checkpoint for layer features
    layer: int | None = None  # 0 = transformer input, N = output of block N
    ks: tuple[int, ...] = (100,)  # one label set per K (cluster ensemble)
    product: tuple[str, ...] = ()  # product k-means subspaces: static, delta, ddelta or a:b column ranges
    algo: str = "lloyd"  # "lloyd" (torch engine) or "sklearn-minibatch" (the paper's configuration)
    sample_pct: float = 100.0  # percentage of fit-split utterances used for fitting
    seed: int = 0  # utterance sample, k-means++ and scikit-learn randomness
    max_iter: int = 100  # Lloyd iterations at most
    tol: float = km.DEFAULT_TOL  # stop when an iteration lowers the inertia by less than this fraction
    max_memory_gb: float = 2.0  # working-memory cap of the k-means engine (chunk size)
    models: tuple[Path, ...] = ()  # apply these fitted models instead of fitting
    device: str = "auto"  # auto, cpu or cuda (k-means and layer features)
    shard: int = 0  # this machine's part of the label splits ...
    num_shards: int = 1  # ... out of this many (needs --model)
    batch_seconds: float = 20.0  # padded audio per layer-feature batch (split over CPU threads)
    chunk_seconds: float = 100.0  # longer utterances go through the model in chunks of this length
    keep_features: bool = False  # keep {out}/feats after the run
    force: bool = False  # overwrite existing outputs


def run_cluster(cfg: ClusterConfig) -> dict[str, Any] | None:
    """Run the whole stage; returns the summary on rank 0 (None on other ranks)."""
    _validate(cfg)
    with dist.process_group(cfg.device) as info:
        return _run(cfg, info)


def _run(cfg: ClusterConfig, info: dist.DistInfo) -> dict[str, Any] | None:
    t_start = time.perf_counter()
    manifests = _load_manifests(cfg)
    models = [load_kmeans(p) for p in cfg.models]
    feature, layer, checkpoint = _resolve_feature(cfg, models)
    extractor = make_extractor(feature, checkpoint, layer, info.device, cfg.batch_seconds, cfg.chunk_seconds)
    spec = extractor.spec
    for m in models:
        _check_model(m, spec)
    if models:
        sets = _apply_names(models)
    else:
        sets = plan_label_sets(cfg.ks, parse_subspaces(cfg.product, spec.feature, spec.dim))
    splits = list(manifests) if cfg.label_splits is None else list(dict.fromkeys(cfg.label_splits))
    replaces = _check_outputs(cfg, sets, splits, models)
    dist.barrier()  # nobody writes before every process has checked
    cfg.out.mkdir(parents=True, exist_ok=True)
    before: dict[str, dict[str, dict]] = {}
    if info.is_main:  # the old label sets stop being complete before any of their files changes
        before = {ls.name: start_set(ls.dir(cfg.out), replaces[ls.name]) for ls in sets}
    dist.barrier()

    times: dict[str, float] = {}
    summary: dict[str, Any] = {"format_version": SUMMARY_VERSION, **asdict(spec), "nproc": info.world_size,
                               "device": info.device, "shard": [cfg.shard, cfg.num_shards]}
    with progress(disable=not info.is_main) as bar:
        store = None
        if not models:
            store, fit_info = _extract_fit(cfg, manifests[cfg.fit_split], extractor, info, bar, times)
            models = _fit_all(cfg, sets, store, spec, fit_info, info, bar, times)
            summary["fit"] = fit_info
        t0 = time.perf_counter()
        summary["splits"] = {}
        for split in splits:
            summary["splits"][split] = _label_split(cfg, split, manifests[split], extractor, models, sets,
                                                    store if split == cfg.fit_split else None, info, bar)
        written = [km_name(split, cfg.shard, cfg.num_shards) for split in splits]
        times["label_seconds"] = time.perf_counter() - t0
    dist.barrier()
    if not info.is_main:
        return None
    if (cfg.out / ".parts").is_dir() and not any((cfg.out / ".parts").iterdir()):
        (cfg.out / ".parts").rmdir()  # only now: other processes may still create their next part files
    for m, ls in zip(models, sets):
        _finish_set(cfg, ls, m, manifests, splits, written, before[ls.name])
    if store is not None and not cfg.keep_features:
        _remove_features(cfg, info.world_size)
    times["total_seconds"] = time.perf_counter() - t_start
    summary["algo"] = models[0].meta.get("algo")
    summary["label_sets"] = [_set_summary(cfg, m, ls) for m, ls in zip(models, sets)]
    summary["times"] = times
    name = "summary.json" if cfg.num_shards == 1 else f"summary_{cfg.shard}_{cfg.num_shards}.json"
    atomic_write_text(cfg.out / name, json.dumps(summary, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------------------ checks


def _validate(cfg: ClusterConfig) -> None:
    require_dir(cfg.data, "data directory")
    if cfg.feature is not None and cfg.feature not in FEATURES:
        raise S3LError(f"unknown --feature {cfg.feature!r} (use {' or '.join(FEATURES)})")
    if cfg.algo not in km.ALGOS:
        raise S3LError(f"unknown --algo {cfg.algo!r} (use {' or '.join(km.ALGOS)})")
    if not 0 < cfg.sample_pct <= 100:
        raise S3LError(f"--sample-pct {cfg.sample_pct}: must be in (0, 100]")
    if not 0 <= cfg.shard < cfg.num_shards:
        raise S3LError(f"--shard {cfg.shard} must be in 0..{cfg.num_shards - 1} (--num-shards {cfg.num_shards})")
    if cfg.num_shards > 1 and not cfg.models:
        raise S3LError("--num-shards > 1 labels one part of the data per machine and needs --model: fit once "
                       "(one machine, --nproc for parallel extraction), then label with --model on each machine")
    if cfg.max_memory_gb <= 0 or cfg.max_iter < 0 or cfg.tol < 0:
        raise S3LError("--max-memory must be positive, --max-iter and --tol non-negative")
    if cfg.batch_seconds <= 0 or cfg.chunk_seconds <= 0:
        raise S3LError("--batch-seconds and --chunk-seconds must be positive")


def _load_manifests(cfg: ClusterConfig) -> dict[str, Manifest]:
    names = list(cfg.label_splits) if cfg.label_splits is not None else sorted(p.stem for p in cfg.data.glob("*.tsv"))
    if not cfg.models:
        names = [cfg.fit_split, *[n for n in names if n != cfg.fit_split]]
    if not names:
        raise S3LError(f"{cfg.data}: no {{split}}.tsv manifests to label")
    return {n: load_split(cfg.data, n).manifest for n in names}


def _resolve_feature(cfg: ClusterConfig, models: list[KMeansModel]) -> tuple[str, int | None, Path | None]:
    if not models:
        return cfg.feature or "mfcc", cfg.layer, cfg.checkpoint
    first = models[0]
    for m in models[1:]:
        if (m.spec.feature, m.spec.layer, m.spec.checkpoint_hash) != (first.spec.feature, first.spec.layer,
                                                                     first.spec.checkpoint_hash):
            raise S3LError(f"{m.path}: fit on other features than {first.path}; apply them in separate runs")
    spec = first.spec
    if cfg.feature is not None and cfg.feature != spec.feature:
        raise S3LError(f"{first.path}: fit on {spec.feature} features, not --feature {cfg.feature}")
    if cfg.layer is not None and spec.feature == "layer" and cfg.layer != spec.layer:
        raise S3LError(f"{first.path}: fit on layer {spec.layer}, not --layer {cfg.layer}")
    checkpoint = cfg.checkpoint
    if spec.feature == "layer" and checkpoint is None:
        if not spec.checkpoint or not Path(spec.checkpoint).exists():
            raise S3LError(f"{first.path}: fit on layer features of {spec.checkpoint}, which is not found; "
                           "pass --checkpoint")
        checkpoint = Path(spec.checkpoint)
    return spec.feature, spec.layer, checkpoint


def _check_model(m: KMeansModel, spec: FeatureSpec) -> None:
    if m.spec.checkpoint_hash != spec.checkpoint_hash:
        raise S3LError(f"{m.path}: fit on features of checkpoint {m.spec.checkpoint} (hash "
                       f"{m.spec.checkpoint_hash}), but --checkpoint {spec.checkpoint} has hash {spec.checkpoint_hash}")
    if m.spec.dim != spec.dim:
        raise S3LError(f"{m.path}: fit on {m.spec.dim}-dim features, these are {spec.dim}-dim")


def _apply_names(models: list[KMeansModel]) -> list[LabelSet]:
    if len(models) == 1:
        ls = models[0].label_set
        return [LabelSet(name="", k=ls.k, cols=ls.cols, subspace=ls.subspace)]
    names = [m.label_set.name or m.path.parent.name for m in models]
    if len(set(names)) != len(names):
        raise S3LError(f"--model files share a label-set name ({', '.join(names)}); apply them in separate runs")
    return [LabelSet(name=n, k=m.label_set.k, cols=m.label_set.cols, subspace=m.label_set.subspace)
            for n, m in zip(names, models)]


def _outputs(cfg: ClusterConfig, sets: list[LabelSet], splits: list[str], fitting: bool) -> list[Path]:
    """Data files this run would replace. summary.json is a report and is rewritten freely; dict.km.txt and
    labels.json follow from the model, so re-applying a model in its own directory rewrites them unchanged."""
    paths: list[Path] = []
    for ls in sets:
        d = ls.dir(cfg.out)
        paths += [d / km_name(s, cfg.shard, cfg.num_shards) for s in splits]
        if fitting:
            paths += [d / MODEL_FILE, d / DICT_FILE, d / LABELS_JSON]
    return paths


def _check_outputs(cfg: ClusterConfig, sets: list[LabelSet], splits: list[str],
                   models: list[KMeansModel]) -> dict[str, list[str]]:
    """Refuse to replace files without --force, except the partial output of an interrupted run (not vouched for
    by labels.json in a directory marked incomplete). Returns the names of existing files replaced, per set."""
    paths = _outputs(cfg, sets, splits, fitting=not models)
    for m, ls in zip(models, sets):  # applying a model into a directory that holds another one replaces it
        dest = ls.dir(cfg.out) / MODEL_FILE
        if dest.is_file() and file_entry(dest)["sha256"] != file_entry(m.path)["sha256"]:
            paths += [dest, dest.parent / DICT_FILE]
    existing = [p for p in paths if p.exists()]
    partial: set[Path] = set()
    for d in {p.parent for p in existing}:
        if (d / INCOMPLETE).exists():
            vouched = vouched_files(d)
            partial |= {p for p in existing if p.parent == d and p.name not in vouched}
    check_overwrite([p for p in existing if p not in partial], cfg.force)
    return {ls.name: [p.name for p in existing if p.parent == ls.dir(cfg.out)] for ls in sets}


# -------------------------------------------------------------------------------------------------- fit


def _extract_fit(cfg: ClusterConfig, manifest: Manifest, extractor: Extractor, info: dist.DistInfo, bar,
                 times: dict[str, float]) -> tuple[FeatureStore, dict[str, Any]]:
    t0, cpu0 = time.perf_counter(), time.process_time()
    n_utt = len(manifest)
    n_sample = math.ceil(n_utt * cfg.sample_pct / 100)
    if n_sample == n_utt:
        sample = np.arange(n_utt)
    else:
        sample = np.sort(np.random.default_rng(cfg.seed).choice(n_utt, n_sample, replace=False))
    mine = [int(i) for i in sample[list(dist.shard(n_sample, info.rank, info.world_size))]]
    spec = extractor.spec
    total = sum(spec.frames(manifest.sizes[i]) for i in mine)
    feat_dir = cfg.out / "feats"
    feat_dir.mkdir(parents=True, exist_ok=True)
    task = bar.add_task(f"{spec.feature} features ({cfg.fit_split})", total=n_sample)

    def done(n: int) -> None:  # progress counts every process's utterances on rank 0's bar, estimated
        bar.advance(task, n * info.world_size)

    items = iter_features(manifest, mine, extractor, on_done=done)
    write_shard(shard_stem(feat_dir, cfg.fit_split, info.rank, info.world_size), spec.dim, total, items)
    cpu = dist.all_reduce_sum([time.process_time() - cpu0])[0]  # every thread of every process
    dist.barrier()
    bar.update(task, completed=n_sample)
    stems = [shard_stem(feat_dir, cfg.fit_split, r, info.world_size) for r in range(info.world_size)]
    store = FeatureStore.open(stems)
    times["extract_seconds"] = time.perf_counter() - t0
    audio = sum(manifest.sizes[int(i)] for i in sample) / SAMPLE_RATE
    fit_info = {"data": str(cfg.data.resolve()), "split": cfg.fit_split, "tsv": str(manifest.source.resolve()),
                "tsv_hash": file_hash(manifest.source), "sample_pct": cfg.sample_pct, "seed": cfg.seed,
                "utterances": int(n_sample), "frames": int(store.num_rows), "audio_seconds": audio,
                "extract_x_realtime": audio / max(times["extract_seconds"], 1e-9), "extract_cpu_seconds": cpu,
                "extract_x_realtime_per_cpu": audio / max(cpu, 1e-9)}
    if store.num_rows == 0:
        raise S3LError(f"{manifest.source}: the fit sample ({n_sample} utterances) has no feature frames")
    return store, fit_info


def _fit_all(cfg: ClusterConfig, sets: list[LabelSet], store: FeatureStore, spec: FeatureSpec,
             fit_info: dict[str, Any], info: dist.DistInfo, bar, times: dict[str, float]) -> list[KMeansModel]:
    t0 = time.perf_counter()
    mem = cfg.max_memory_gb * 2**30
    # Lloyd is data-parallel: each process streams the shard it extracted, statistics are all-reduced.
    mine = FeatureStore([store.shards[info.rank]])
    models = []
    for ls in sets:
        label = f"k-means K={ls.k}" + (f" {ls.subspace}" if ls.subspace else "")
        if cfg.algo == "lloyd":
            task = bar.add_task(label, total=cfg.max_iter + 1)
            fit = km.fit_lloyd(mine, ls.k, cols=ls.cols, max_iter=cfg.max_iter, tol=cfg.tol, seed=cfg.seed,
                               device=info.device, max_memory_bytes=mem,
                               on_iter=lambda it, inertia, task=task, label=label: bar.update(
                                   task, completed=it + 1, description=f"{label} inertia {inertia:.4g}"))
            bar.update(task, completed=cfg.max_iter + 1)
        else:
            task = bar.add_task(f"{label} (scikit-learn)", total=1)
            fit = km.fit_sklearn_minibatch(store, ls.k, cols=ls.cols, seed=cfg.seed, max_memory_bytes=mem) \
                if info.is_main else None
            fit = dist.broadcast_object(fit)
            bar.update(task, completed=1)
        path = ls.dir(cfg.out) / MODEL_FILE
        meta = {"algo": fit.algo, "inertia": fit.inertia, "n_iter": fit.n_iter, "converged": fit.converged,
                "fit_seconds": fit.seconds, "fit": fit_info}
        if info.is_main:
            ls.dir(cfg.out).mkdir(parents=True, exist_ok=True)
            save_kmeans(path, fit.centroids, spec, ls, fit.counts, **meta)
        models.append(KMeansModel(path=path, centroids=fit.centroids, counts=fit.counts, spec=spec,
                                  label_set=ls, meta={**meta, "k": ls.k}))
    dist.barrier()
    times["fit_seconds"] = time.perf_counter() - t0
    return models


# ------------------------------------------------------------------------------------------------ label


def _label_split(cfg: ClusterConfig, split: str, manifest: Manifest, extractor: Extractor,
                 models: list[KMeansModel], sets: list[LabelSet], cache: FeatureStore | None,
                 info: dist.DistInfo, bar) -> dict[str, Any]:
    import torch

    machine = dist.shard(len(manifest), cfg.shard, cfg.num_shards)
    part = dist.shard(len(machine), info.rank, info.world_size)
    mine = [machine[j] for j in part]
    spec = extractor.spec
    cents = []
    for m in models:
        c = torch.from_numpy(np.ascontiguousarray(m.centroids, dtype=np.float32)).to(info.device)
        cents.append((c, c.pow(2).sum(1), m.label_set.cols))
    parts_dir = cfg.out / ".parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    part_files = [_part_file(parts_dir, ls, split, cfg, info.rank) for ls in sets]
    handles = [open(p, "w", encoding="utf-8") for p in part_files]
    task = bar.add_task(f"labels ({split})", total=len(machine))
    pending: dict[int, list[str]] = {}  # finished lines waiting for earlier utterances (tsv order)
    nxt = 0
    buf: list[tuple[int, np.ndarray]] = []  # features assigned together: one matrix product per label set
    limit = min(km.chunk_rows(cfg.max_memory_gb * 2**30, max(s.k for s in sets), spec.dim), LABEL_ROWS)

    def flush() -> None:
        nonlocal nxt
        x = torch.from_numpy(np.concatenate([f for _, f in buf])).to(info.device)  # (sum T, D)
        cuts = np.cumsum([len(f) for _, f in buf])[:-1]
        per_set = []
        for c, c_norm, cols in cents:
            xs = x[:, cols[0]:cols[1]].contiguous() if cols else x
            per_set.append(np.split(km.assign(xs, c, c_norm)[0].cpu().numpy(), cuts))
        for j, (utt, _) in enumerate(buf):
            pending[utt] = [" ".join(map(str, labels[j].tolist())) for labels in per_set]
        buf.clear()
        while nxt < len(mine) and mine[nxt] in pending:
            for h, line in zip(handles, pending.pop(mine[nxt])):
                h.write(line + "\n")
            nxt += 1

    try:
        rows = 0
        for utt, feat in iter_features(manifest, mine, extractor, cached=cache,
                                       on_done=lambda n: bar.advance(task, n * info.world_size)):
            buf.append((utt, feat))
            rows += len(feat)
            if rows >= limit:
                flush()
                rows = 0
        if buf:
            flush()
    finally:
        for h in handles:
            h.close()
    if nxt != len(mine):
        raise RuntimeError(f"labelled {nxt} of {len(mine)} utterances of {split}")
    dist.barrier()
    bar.update(task, completed=len(machine))
    frames = [spec.frames(manifest.sizes[i]) for i in machine]
    if info.is_main:
        for ls, m in zip(sets, models):
            d = ls.dir(cfg.out)
            d.mkdir(parents=True, exist_ok=True)
            parts = [_part_file(parts_dir, ls, split, cfg, r) for r in range(info.world_size)]
            dest = d / km_name(split, cfg.shard, cfg.num_shards)
            concat_parts(parts, dest)
            check_km(dest, frames, m.label_set.k, manifest.source)
            for p in parts:
                p.unlink()
    return {"utterances": len(machine), "frames": int(sum(frames)),
            "audio_seconds": sum(manifest.sizes[i] for i in machine) / SAMPLE_RATE}


def _part_file(parts_dir: Path, ls: LabelSet, split: str, cfg: ClusterConfig, rank: int) -> Path:
    """One process's lines of one split (machines sharing --out write distinct names)."""
    machine = f".{cfg.shard}_{cfg.num_shards}" if cfg.num_shards > 1 else ""
    return parts_dir / f"{ls.name or 'top'}.{split}{machine}.{rank}"


def _finish_set(cfg: ClusterConfig, ls: LabelSet, m: KMeansModel, manifests: dict[str, Manifest],
                splits: list[str], written: list[str], before: dict[str, dict]) -> None:
    """Join machine shards that are all complete, then write the set's labels.json (last)."""
    d = ls.dir(cfg.out)
    written = list(written)
    carried = still_valid(d, m.path, [before, vouched_files(d)], skip=written)  # now: other machines' parts too
    if cfg.num_shards > 1:
        for split in splits:
            manifest = manifests[split]
            frames = [m.spec.frames(n) for n in manifest.sizes]
            if merge_machine_shards(d, split, cfg.num_shards, frames, m.label_set.k, manifest.source,
                                    complete=[*written, *carried]):
                written.append(f"{split}.km")
                carried.pop(f"{split}.km", None)
    write_set_files(d, m, written, carried)


# ------------------------------------------------------------------------------------------------ report


def _set_summary(cfg: ClusterConfig, m: KMeansModel, ls: LabelSet) -> dict[str, Any]:
    counts = np.asarray(m.counts, dtype=np.float64)
    p = counts / max(counts.sum(), 1.0)
    nz = p[p > 0]
    return {"name": ls.name, "dir": str(ls.dir(cfg.out)), "k": ls.k, "columns": list(ls.cols) if ls.cols else None,
            "subspace": ls.subspace, "inertia": m.meta.get("inertia"), "n_iter": m.meta.get("n_iter"),
            "converged": m.meta.get("converged"), "fit_seconds": m.meta.get("fit_seconds"),
            "used_clusters": int((counts > 0).sum()), "perplexity": float(np.exp(-(nz * np.log(nz)).sum())),
            "largest_cluster_share": float(p.max()) if len(p) else 0.0, "model": str(m.path)}


def _remove_features(cfg: ClusterConfig, world: int) -> None:
    feat_dir = cfg.out / "feats"
    for r in range(world):
        stem = shard_stem(feat_dir, cfg.fit_split, r, world)
        for ext in (".npy", ".len", ".idx"):
            shard_file(stem, ext).unlink(missing_ok=True)
    if feat_dir.is_dir() and not any(feat_dir.iterdir()):
        shutil.rmtree(feat_dir)
