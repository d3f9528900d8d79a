"""``--layers``: k-means on every transformer layer of a checkpoint, unit quality per layer and K (HuBERT Fig. 2).

One forward pass per utterance gives every layer (``hidden_states``: 0 = transformer input, N = output of block
N); the layers are stored side by side, ``(T, (L + 1) * D)``, in one spilled feature shard of the cluster
module, and each k-means fit reads its layer's columns through the store's column slicing. Extraction,
storage, fitting (the default Lloyd engine) and assignment are all :mod:`s3l.cluster`'s; this module only
loops over layers and K and scores the labels against the phones.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

from s3l.analysis.align import JointCounter, RateAlignment, align_pair
from s3l.analysis.inputs import CHUNK_SECONDS, AnalyzeConfig, load_eval_split
from s3l.analysis.metrics import mean_run_length, unit_quality
from s3l.analysis.plots import plot_layer_sweep
from s3l.audio import SAMPLE_RATE
from s3l.cluster.features import LayerExtractor
from s3l.console import console
from s3l.errors import S3LError
from s3l.fileio import atomic_write_text
from s3l.manifest import Manifest, load_split
from s3l.progress import progress

if TYPE_CHECKING:
    import torch

    from s3l.cluster.store import FeatureStore

def layer_sweep(cfg: AnalyzeConfig) -> dict[str, Any]:
    """Fit k-means per layer and K, score against the phones of ``cfg.split``; write layers.json/.png."""
    assert cfg.checkpoint is not None and cfg.data is not None and cfg.split is not None
    manifest, phones = load_eval_split(cfg.data, cfg.split, cfg.phones)
    extractor = AllLayersExtractor(cfg.checkpoint, cfg.device, cfg.batch_seconds)
    n_layers, dim = extractor.num_states, extractor.layer_dim
    fit_split = cfg.fit_split or cfg.split
    fit_manifest = manifest if fit_split == cfg.split else load_split(cfg.data, fit_split).manifest
    fit_utts = sample_utterances(len(fit_manifest), cfg.sample_pct, cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cfg.out, prefix=".layer-features-") as tmp:
        store = extract(manifest, list(range(len(manifest))), extractor, Path(tmp), f"{cfg.split}")
        if fit_split == cfg.split and len(fit_utts) == len(manifest):
            fit_store = store
        else:
            cached = store if fit_split == cfg.split else None
            fit_store = extract(fit_manifest, fit_utts, extractor, Path(tmp), f"fit-{fit_split}", cached=cached)
        centroids, inertia = fit_all(fit_store, n_layers, dim, cfg.ks, cfg.seed, cfg.device)
        rates = RateAlignment(unit_rate=extractor.spec.label_rate, phone_rate=cfg.phone_rate,
                              max_diff_ms=cfg.max_diff_ms)
        rows = score_layers(store, manifest, phones, centroids, dim, rates, cfg)
    for row in rows:
        row["inertia"] = inertia[(row["layer"], row["k"])]
    result = {
        "checkpoint": str(cfg.checkpoint),
        "split": cfg.split,
        "fit_split": fit_split,
        "fit_utterances": len(fit_utts),
        "sample_pct": cfg.sample_pct,
        "ks": list(cfg.ks),
        "layers": n_layers,
        "unit_rate": rates.unit_rate,
        "phone_rate": rates.phone_rate,
        "rows": rows,
        "best": {str(k): max((r for r in rows if r["k"] == k), key=lambda r: r["pnmi"] or 0.0)["layer"]
                 for k in cfg.ks},
        "plot": "layers.png",
    }
    plot_layer_sweep(rows, cfg.out / "layers.png", title=f"{cfg.checkpoint.name} on {cfg.split}: k-means per layer")
    atomic_write_text(cfg.out / "layers.json", json.dumps(result, indent=2) + "\n")
    print_sweep(rows, title=f"{cfg.checkpoint} layers on {cfg.split} (k-means fit on {fit_split})")
    return result


def sample_utterances(n: int, pct: float, seed: int) -> list[int]:
    """A seeded ``pct`` percent of ``range(n)`` (at least one), in order."""
    if not 0 < pct <= 100:
        raise S3LError(f"--sample-pct must be in (0, 100], got {pct}")
    m = max(1, round(n * pct / 100))
    return sorted(np.random.default_rng(seed).choice(n, m, replace=False).tolist()) if m < n else list(range(n))


class AllLayersExtractor(LayerExtractor):
    """The cluster module's layer extractor (batching, aligned chunks) returning every layer side by side.

    Features are ``(T, (L + 1) * D)``: columns ``[l * D, (l + 1) * D)`` hold ``hidden_states()[l]``.
    """

    def __init__(self, checkpoint: Path, device: str, batch_seconds: float) -> None:
        import torch

        if not Path(checkpoint).exists():
            raise S3LError(f"{checkpoint}: checkpoint not found")
        super().__init__(checkpoint, 0, device, batch_seconds, CHUNK_SECONDS)
        with torch.no_grad():
            probe = torch.zeros(1, SAMPLE_RATE, device=device)
            states = self.model.hidden_states(probe, torch.tensor([SAMPLE_RATE], device=device))
        self.num_states = len(states)  # L + 1
        self.layer_dim = int(states[0].shape[-1])  # D
        self.spec = replace(self.spec, dim=self.layer_dim * self.num_states, layer=None)

    def _layer(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            states = self.model.hidden_states(batch.to(self.device), lengths.to(self.device))
        return torch.cat(states, dim=-1)  # (B, T, (L + 1) * D)


# ------------------------------------------------------------------------------------------ work


def extract(manifest: Manifest, utts: list[int], extractor: AllLayersExtractor, tmp: Path, name: str,
            cached: FeatureStore | None = None) -> FeatureStore:
    """Every layer of ``utts`` spilled to one shard under ``tmp``; returns the store reading it back."""
    from s3l.cluster.features import iter_features
    from s3l.cluster.store import FeatureStore, shard_stem, write_shard

    stem = shard_stem(tmp, name, 0, 1)
    total = sum(extractor.spec.frames(manifest.sizes[i]) for i in utts)
    with progress() as bar:
        task = bar.add_task(f"layers of {name}", total=len(utts))
        items = iter_features(manifest, utts, extractor, cached=cached, on_done=lambda n: bar.advance(task, n))
        write_shard(stem, extractor.spec.dim, total, items)
    return FeatureStore.open([stem])


def fit_all(store: FeatureStore, n_layers: int, dim: int, ks: tuple[int, ...], seed: int,
            device: str) -> tuple[dict[tuple[int, int], np.ndarray], dict[tuple[int, int], float]]:
    """k-means (the cluster module's default engine) for every (layer, K): centroids and mean inertia."""
    from s3l.cluster.kmeans import fit_lloyd

    centroids: dict[tuple[int, int], np.ndarray] = {}
    inertia: dict[tuple[int, int], float] = {}
    with progress() as bar:
        task = bar.add_task("k-means per layer and K", total=n_layers * len(ks))
        for layer in range(n_layers):
            for k in ks:
                fit = fit_lloyd(store, k, cols=(layer * dim, (layer + 1) * dim), seed=seed, device=device)
                centroids[(layer, k)] = fit.centroids
                inertia[(layer, k)] = fit.inertia
                bar.advance(task)
    return centroids, inertia


def score_layers(store: FeatureStore, manifest: Manifest, phones: list[list[str]],
                 centroids: dict[tuple[int, int], np.ndarray], dim: int, rates: RateAlignment,
                 cfg: AnalyzeConfig) -> list[dict[str, Any]]:
    """Assign every frame of every layer to its nearest centroid and score the labels against the phones."""
    import torch

    from s3l.cluster.kmeans import assign

    keys = sorted(centroids)
    cents = {key: torch.from_numpy(c).to(cfg.device) for key, c in centroids.items()}
    norms = {key: c.pow(2).sum(1) for key, c in cents.items()}
    counters = {key: JointCounter() for key in keys}
    runs: dict[tuple[int, int], list[np.ndarray]] = {key: [] for key in keys}
    skipped = 0
    with progress() as bar:
        task = bar.add_task("assigning units", total=len(manifest))
        for i in range(len(manifest)):
            feats = torch.from_numpy(store[i]).to(cfg.device)  # (T, (L + 1) * D)
            ph = np.asarray(phones[i], dtype=str)
            for layer, k in keys:  # every (layer, K) has the same length: a mismatch shows at the first
                x = feats[:, layer * dim:(layer + 1) * dim]
                labels = assign(x, cents[(layer, k)], norms[(layer, k)])[0].cpu().numpy()
                pair = align_pair(labels, ph, rates)
                if pair is None:
                    if not cfg.skip_mismatch:
                        raise S3LError(f"{manifest.source}:{manifest.line_of(i)}: {len(labels)} frames at "
                                       f"{rates.unit_rate} Hz do not match {len(ph)} phones at {rates.phone_rate} Hz "
                                       "(wrong --phone-rate?)")
                    skipped += 1
                    break
                counters[(layer, k)].add(*pair)
                runs[(layer, k)].append(labels)
            bar.advance(task)
    rows = []
    for layer, k in keys:
        q = unit_quality(counters[(layer, k)].counts)
        seg = mean_run_length(runs[(layer, k)])
        rows.append({"layer": layer, "k": k, "pnmi": q.pnmi, "phone_purity": q.phone_purity,
                     "cluster_purity": q.cluster_purity, "used_units": q.used_units,
                     "segment_ms": seg * 1000.0 / rates.unit_rate, "frames": q.frames,
                     "skipped_mismatch": skipped})
    return rows


def print_sweep(rows: list[dict[str, Any]], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("layer", "K", "PNMI", "phone purity", "cluster purity", "units used", "segment ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["layer"]), str(r["k"]), "n/a" if r["pnmi"] is None else f"{r['pnmi']:.4f}",
                      f"{r['phone_purity']:.4f}", f"{r['cluster_purity']:.4f}", str(r["used_units"]),
                      f"{r['segment_ms']:.1f}")
    console.print(table)
