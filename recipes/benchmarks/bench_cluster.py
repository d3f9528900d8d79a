"""Benchmark of ``s3l cluster`` (issue 4): k-means engines, feature extraction speed, peak memory.

    .venv/bin/python recipes/benchmarks/bench_cluster.py [--data CORPUS] [--work DIR] [--json OUT]

1. MFCC extraction speed of ``s3l cluster`` on the corpus's fit split, 1 process and ``--nproc 2``
   (audio seconds per wall second, reading + decoding included).
2. Layer-feature extraction speed (randomly initialised ``tiny`` and ``base`` checkpoints, batched).
3. k-means on the same features, every engine in a fresh process (wall and CPU seconds, inertia, peak RSS):
   ``mfcc``: the first ``--mfcc-frames`` 39-dim MFCC frames, K=100 (HuBERT iteration 1);
   ``proj768``: the same MFCCs (standardised) in 9-frame windows (351 dims) through a fixed random projection to
   768 dims, K=500 (the size of iteration 2's layer features).
Without ``--data`` a corpus is synthesised with ``s3l prep synth``. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from s3l.cluster.kmeans import DEFAULT_TOL

S3L = [sys.executable, "-m", "s3l"]


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the forking parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fit_child(args: argparse.Namespace) -> None:
    """One engine on one feature set, in this (fresh) process; prints one JSON line."""
    import torch

    from s3l.cluster import kmeans as km
    from s3l.cluster.store import FeatureStore

    store = FeatureStore.open([Path(args.stem)])
    torch.zeros(1)  # torch initialised before the baseline
    base = peak_rss_mb()
    t, c = time.perf_counter(), time.process_time()
    if args.algo == "lloyd":
        fit = km.fit_lloyd(store, args.k, seed=0, tol=args.tol, max_memory_bytes=args.max_memory * 2**30)
    else:
        fit = km.fit_sklearn_minibatch(store, args.k, seed=0, max_memory_bytes=args.max_memory * 2**30)
    print(json.dumps({"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "inertia": fit.inertia,
                      "n_iter": fit.n_iter, "converged": fit.converged, "peak_rss_mb": peak_rss_mb(),
                      "rss_before_fit_mb": base}))


def run_fit(stem: Path, k: int, algo: str, max_memory: float, tol: float) -> dict:
    cmd = [sys.executable, __file__, "_fit", "--stem", str(stem), "--k", str(k), "--algo", algo,
           "--max-memory", str(max_memory), "--tol", str(tol)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def mfcc_extraction(data: Path, work: Path, nproc: int) -> dict:
    out = work / f"extract{nproc}"
    cmd = [*S3L, "cluster", "--data", str(data), "--out", str(out), "--k", "1", "--max-iter", "0",
           "--label-splits", "", "--nproc", str(nproc), "--device", "cpu", "--force", "--keep-features"]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    fit = json.loads((out / "summary.json").read_text())["fit"]
    return {"nproc": nproc, "audio_s": fit["audio_seconds"], "frames": fit["frames"],
            "x_realtime": fit["extract_x_realtime"], "cpu_s": fit["extract_cpu_seconds"],
            "x_realtime_per_cpu": fit["extract_x_realtime_per_cpu"], "feats": str(out / "feats")}


def layer_extraction(data: Path, work: Path, preset_name: str, seconds: float) -> dict:
    import torch

    from s3l.cluster.features import LayerExtractor
    from s3l.manifest import load_split
    from s3l.models import build_pretrain_model, preset, save_model

    ckpt = work / f"{preset_name}.safetensors"
    if not ckpt.exists():
        torch.manual_seed(0)
        save_model(ckpt, build_pretrain_model(preset(preset_name, "contrastive")))
    ex = LayerExtractor(ckpt, layer=6 if preset_name == "base" else 2, device="cpu", batch_seconds=20.0,
                        chunk_seconds=100.0)
    m = load_split(data, "train").manifest
    picked, total = [], 0
    for i, n in enumerate(m.sizes):
        if total >= seconds * 16000:
            break
        picked.append(i)
        total += n
    ex.extract(m, picked[:2])  # warm-up (first-call allocations), not timed
    t, c = time.perf_counter(), time.process_time()
    frames = 0
    for batch in ex.plan(picked, m.sizes):
        frames += sum(len(f) for f in ex.extract(m, batch))
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {"model": preset_name, "layer": ex.layer, "dim": ex.spec.dim, "audio_s": total / 16000, "frames": frames,
            "x_realtime": total / 16000 / wall, "cpu_s": cpu, "x_realtime_per_cpu": total / 16000 / cpu}


def build_sets(feats: Path, work: Path, mfcc_frames: int, proj_frames: int) -> dict[str, tuple[Path, int, int]]:
    from s3l.cluster.store import FeatureStore, shard_stem, write_shard

    src = FeatureStore.open([shard_stem(feats, "train", 0, 1)])
    n = max(mfcc_frames, proj_frames)
    if src.num_rows < n:
        raise SystemExit(f"{feats}: {src.num_rows} MFCC frames, fewer than the {n} requested; use more audio")
    x = src.take(np.arange(n), 1 << 16)  # (n, 39)
    sets_dir = work / "sets"
    sets_dir.mkdir(exist_ok=True)
    mfcc = shard_stem(sets_dir, "mfcc", 0, 1)
    write_shard(mfcc, 39, mfcc_frames, [(0, x[:mfcc_frames])])
    z = (x[:proj_frames] - x.mean(0)) / x.std(0)
    ctx = np.concatenate([np.roll(z, s, axis=0) for s in range(-4, 5)], axis=1)  # (N, 351)
    w = np.random.default_rng(0).standard_normal((351, 768)).astype(np.float32) / np.sqrt(351)
    proj = shard_stem(sets_dir, "proj768", 0, 1)
    write_shard(proj, 768, proj_frames, [(0, (ctx @ w).astype(np.float32))])
    return {"mfcc": (mfcc, 100, 39), "proj768": (proj, 500, 768)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="corpus with train.tsv (default: synthesise one in --work)")
    p.add_argument("--work", type=Path, default=Path("/tmp/s3l-bench-cluster"))
    p.add_argument("--json", type=Path, help="output JSON (default: WORK/bench_cluster.json)")
    p.add_argument("--mfcc-frames", type=int, default=200_000)
    p.add_argument("--proj-frames", type=int, default=200_000)
    p.add_argument("--layer-seconds", type=float, default=60.0, help="audio per layer-feature measurement")
    p.add_argument("--small-memory", type=float, default=0.25, help="GB cap of the bounded-memory Lloyd run")
    p.add_argument("--skip-sklearn", default="", help="comma-separated sets not to fit with scikit-learn")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        data = args.work / "synth"
        if not (data / "train.tsv").exists():
            hours = max(args.mfcc_frames, args.proj_frames) / 100 / 3600 * 1.05
            subprocess.run([*S3L, "prep", "synth", "--out", str(data), "--hours", f"{hours:.3f}", "--dev-minutes",
                            "1", "--test-minutes", "1", "--labeled-scale", "0.05", "--lm-sentences", "100"],
                           check=True)
    report: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}, "data": str(data)}
    print("MFCC extraction ...", flush=True)
    report["mfcc_extraction"] = [mfcc_extraction(data, args.work, n) for n in (1, 2)]
    print("layer extraction ...", flush=True)
    report["layer_extraction"] = [layer_extraction(data, args.work, name, args.layer_seconds)
                                  for name in ("tiny", "base")]
    sets = build_sets(Path(report["mfcc_extraction"][0]["feats"]), args.work, args.mfcc_frames, args.proj_frames)
    fits = []
    skip = set(filter(None, args.skip_sklearn.split(",")))
    for name, (stem, k, d) in sets.items():
        size_mb = (stem.parent / f"{stem.name}.npy").stat().st_size / 2**20
        runs = [("lloyd", 2.0, DEFAULT_TOL), ("lloyd", args.small_memory, DEFAULT_TOL), ("lloyd", 2.0, 1e-4)]
        runs += [] if name in skip else [("sklearn-minibatch", 2.0, 0.0)]
        for algo, mem, tol in runs:
            print(f"k-means {name} K={k} {algo} (max-memory {mem} GB, tol {tol}) ...", flush=True)
            r = run_fit(stem, k, algo, mem, tol)
            fits.append({"set": name, "frames": int(size_mb * 2**20 // (4 * d)), "dim": d, "k": k, "algo": algo,
                         "max_memory_gb": mem if algo == "lloyd" else None, "tol": tol if algo == "lloyd" else None,
                         "features_mb": size_mb, **r})
    for f in fits:
        ref = next((g for g in fits if g["set"] == f["set"] and g["algo"] == "sklearn-minibatch"), None)
        f["speedup_vs_sklearn"] = ref["wall_s"] / f["wall_s"] if ref else None
        f["cpu_speedup_vs_sklearn"] = ref["cpu_s"] / f["cpu_s"] if ref else None
        f["inertia_vs_sklearn_pct"] = 100 * (f["inertia"] / ref["inertia"] - 1) if ref else None
    report["kmeans"] = fits
    report["machine"]["load_avg_end"] = os.getloadavg()
    out = args.json or args.work / "bench_cluster.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {out}")


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="k-means engines (each fit in a fresh process)")
    for c in ("set", "N x D", "K", "engine", "mem cap", "tol", "wall s", "CPU s", "iters", "inertia", "vs sklearn",
              "speed-up wall/CPU", "peak RSS MB", "fit adds MB", "features MB"):
        t.add_column(c, justify="left" if c in ("set", "engine") else "right")
    for f in report["kmeans"]:
        speed = "-"
        if f["speedup_vs_sklearn"]:
            speed = f"{f['speedup_vs_sklearn']:.1f}x / {f['cpu_speedup_vs_sklearn']:.1f}x"
        t.add_row(f["set"], f"{f['frames']} x {f['dim']}", str(f["k"]), f["algo"],
                  f"{f['max_memory_gb']} GB" if f["max_memory_gb"] else "-", f"{f['tol']:g}" if f["tol"] else "-",
                  f"{f['wall_s']:.1f}", f"{f['cpu_s']:.1f}", str(f["n_iter"]), f"{f['inertia']:.4g}",
                  f"{f['inertia_vs_sklearn_pct']:+.2f} %" if f["inertia_vs_sklearn_pct"] is not None else "-",
                  speed, f"{f['peak_rss_mb']:.0f}", f"{f['peak_rss_mb'] - f['rss_before_fit_mb']:.0f}",
                  f"{f['features_mb']:.0f}")
    Console(width=200).print(t)
    e = Table(title="feature extraction (audio seconds per second; reading and decoding included)")
    for c in ("features", "processes", "audio s", "x real time (wall)", "x real time per CPU second"):
        e.add_column(c)
    for r in report["mfcc_extraction"]:
        e.add_row("MFCC 39-d", str(r["nproc"]), f"{r['audio_s']:.0f}", f"{r['x_realtime']:.0f}",
                  f"{r['x_realtime_per_cpu']:.0f}")
    for r in report["layer_extraction"]:
        e.add_row(f"{r['model']} layer {r['layer']} ({r['dim']}-d)", "1", f"{r['audio_s']:.0f}",
                  f"{r['x_realtime']:.1f}", f"{r['x_realtime_per_cpu']:.1f}")
    Console(width=200).print(e)
    m = report["machine"]
    print(f"machine: {m['cpus']} CPUs, load average {m['load_avg_start'][0]:.1f} at start, "
          f"{m['load_avg_end'][0]:.1f} at end")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_fit":
        cp = argparse.ArgumentParser()
        cp.add_argument("_fit")
        cp.add_argument("--stem", required=True)
        cp.add_argument("--k", type=int, required=True)
        cp.add_argument("--algo", required=True)
        cp.add_argument("--max-memory", type=float, required=True)
        cp.add_argument("--tol", type=float, required=True)
        fit_child(cp.parse_args())
    else:
        main()
