"""``s3l probe``: linear phone probes on frozen features, one per layer (SUPERB's phoneme probe, at frame level).

For every layer a multinomial logistic regression (a linear layer + softmax) is fit on the frames of one split and
scored on the frames of another: the frame accuracy says how linearly a representation encodes the phone, a measure
that stays informative at sizes where fine-tuned WER does not move. Features are standardised with the fit split's
statistics -- whitened (mean and covariance), which leaves the linear model class as it is but lets full-batch
L-BFGS converge in tens of iterations; with per-dimension scaling only, scikit-learn's L-BFGS took 88 s per layer
and had not converged after 200 iterations on 100k frames of a random-init tiny model (2 busy CPU cores), at the
same accuracy (within 0.002). The majority-class accuracy (the fit split's most frequent phone, scored on the eval
split) is reported beside it as chance level.

Features (extraction is :mod:`s3l.cluster`'s): the 39-dim HuBERT-recipe MFCCs at 100 Hz, or every layer of a
checkpoint at 50 Hz in one forward pass (``hidden_states``: 0 = transformer input, N = output of block N), or of a
randomly initialised wav2vec 2.0 model of a preset (the baseline; same backbone as HuBERT).

Labels: the split's ``.phn`` (one phone per 10 ms frame; frame i covers samples ``[160 i, 160 i + 160)``). A feature
frame j of hop ``h`` has a 400-sample window (Kaldi's 25 ms MFCC window; the conv encoder's receptive field)
starting at sample ``h j``; it is labelled with the phone frame holding its centre sample ``h j + 200``: phone
frame ``2 j + 1`` for 50 Hz layer frames, ``j + 1`` for 100 Hz MFCC frames. Every such index lies inside the
``num_samples // 160`` phone frames that ``load_split`` checks for each ``.phn`` line.

Frames: per split, whole utterances in a seeded random order until ``max_frames`` frames are reached, then a seeded
uniform subsample of exactly ``max_frames`` of their frames (extraction costs in proportion to the cap, not to the
split).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s3l.audio import MIN_SAMPLES, PHONE_HOP, SAMPLE_RATE
from s3l.errors import S3LError
from s3l.fileio import atomic_write_text, check_overwrite
from s3l.manifest import Manifest, load_split

OUTPUTS = ("probe.json", "probe.png")
WINDOW = MIN_SAMPLES  # samples: the 25 ms Kaldi MFCC window and the conv encoder's receptive field
L2 = 1e-5  # penalty weight: ~0.05 % of the loss at the optimum (random-init tiny, 40 phones); bounds separable fits
MAX_ITER = 100  # L-BFGS iterations; whitened features converge in 30-60 (measured, random-init tiny, 100k frames)
TOLERANCE = 1e-4  # stop when an iteration lowers the loss (nats per frame) by less; accuracy moves < 0.001 after


@dataclass(frozen=True)
class ProbeConfig:
    data: Path  # manifest directory: FIT_SPLIT and EVAL_SPLIT .tsv, each with its .phn
    out: Path  # report directory: probe.json, probe.png
    fit_split: str = "train-1h"  # split the probes are fit on
    eval_split: str = "dev"  # split they are scored on
    feature: str | None = None  # "mfcc"; None with `checkpoint` or `random_init`
    checkpoint: Path | None = None  # any file s3l.load_model reads: every layer is probed
    random_init: str | None = None  # a model preset (tiny, base, ...), randomly initialised with `seed`
    layers: tuple[int, ...] | None = None  # hidden_states indices to probe; None = every layer
    max_frames: int = 100_000  # frames per split at most (seeded sample; see the module docstring)
    seed: int = 0  # utterance order, frame subsample and the --random-init weights
    l2: float = L2  # weight of the L2 penalty on the (whitened) weights, added to the mean cross-entropy
    max_iter: int = MAX_ITER  # L-BFGS iterations per layer at most
    batch_seconds: float = 80.0  # padded audio per forward batch
    device: str = "auto"  # extraction and fitting: auto, cpu or cuda
    threads: int = 0  # CPU threads for extraction and fitting (0: torch's default)
    force: bool = False  # overwrite probe.json / probe.png


def run_probe(cfg: ProbeConfig) -> dict[str, Any]:
    """Fit and score a probe per layer; write ``probe.json`` and ``probe.png`` into ``cfg.out``; return the report."""
    from s3l import distributed

    start = time.perf_counter()
    sources = [s for s, v in (("--feature", cfg.feature), ("--checkpoint", cfg.checkpoint),
                              ("--random-init", cfg.random_init)) if v is not None]
    if len(sources) != 1:
        raise S3LError("give exactly one of --feature mfcc, --checkpoint CKPT or --random-init PRESET"
                       + (f" (got {' and '.join(sources)})" if sources else ""))
    if cfg.feature is not None and cfg.feature != "mfcc":
        raise S3LError(f"unknown --feature {cfg.feature!r}: the probe takes mfcc; probe layers with --checkpoint")
    if cfg.feature == "mfcc" and cfg.layers is not None:
        raise S3LError("--layers is for --checkpoint / --random-init; MFCC features are one layer")
    if cfg.checkpoint is not None and not Path(cfg.checkpoint).exists():
        raise S3LError(f"{cfg.checkpoint}: checkpoint not found")
    if cfg.max_frames < 1:
        raise S3LError(f"--max-frames must be at least 1, got {cfg.max_frames}")
    check_overwrite([cfg.out / name for name in OUTPUTS], cfg.force)
    fit_manifest, fit_phones = _split(cfg.data, cfg.fit_split)
    eval_manifest, eval_phones = _split(cfg.data, cfg.eval_split)

    info = distributed.init(cfg.device)
    distributed.set_cpu_threads(cfg.threads, info)
    with tempfile.TemporaryDirectory(prefix="s3l-probe-") as tmp:
        extractor, layers, dim = _extractor(cfg, info.device, Path(tmp))
        fit = collect(fit_manifest, fit_phones, extractor, cfg.max_frames, cfg.seed, f"features of {cfg.fit_split}")
        evl = collect(eval_manifest, eval_phones, extractor, cfg.max_frames, cfg.seed,
                      f"features of {cfg.eval_split}")
    extract_seconds = time.perf_counter() - start

    from s3l.progress import progress

    rows = []
    with progress() as bar:
        task = bar.add_task("fitting probes", total=len(layers))
        for layer in layers:
            cols = slice(layer * dim, (layer + 1) * dim)
            rows.append({"layer": layer, **fit_probe(fit.x[:, cols], fit.y, evl.x[:, cols], evl.y,
                                                    l2=cfg.l2, max_iter=cfg.max_iter,
                                                    device=info.device)})
            bar.advance(task)
    best = max(rows, key=lambda r: r["accuracy"])
    report: dict[str, Any] = {
        "feature": "mfcc" if cfg.feature else "layer",
        "checkpoint": None if cfg.checkpoint is None else str(cfg.checkpoint),
        "random_init": cfg.random_init,
        "layers": rows,
        "best_layer": best["layer"],
        "best_accuracy": best["accuracy"],
        "majority_accuracy": majority_accuracy(fit.y, evl.y),
        "fit_split": cfg.fit_split,
        "eval_split": cfg.eval_split,
        "frames": {
            "rate": extractor.spec.label_rate,
            "fit": len(fit.y), "eval": len(evl.y),
            "fit_utterances": fit.utterances, "eval_utterances": evl.utterances,
            "fit_split_frames": fit.split_frames, "eval_split_frames": evl.split_frames,
            "eval_unseen_phone": int((~np.isin(evl.y, np.unique(fit.y))).sum()),  # phones the fit split lacks
        },
        "phones": len(np.unique(fit.y)),
        "dim": dim,
        "seed": cfg.seed,
        "max_frames": cfg.max_frames,
        "l2": cfg.l2,
        "extract_seconds": extract_seconds,
        "fit_seconds": time.perf_counter() - start - extract_seconds,
        "seconds": time.perf_counter() - start,
        "plot": "probe.png",
    }
    what = cfg.feature or (f"random {cfg.random_init}" if cfg.random_init else Path(cfg.checkpoint).name)
    plot_probe(rows, report["majority_accuracy"], cfg.out / "probe.png", mfcc=cfg.feature == "mfcc",
               title=f"linear phone probe: {what}, fit on {cfg.fit_split}, scored on {cfg.eval_split}")
    atomic_write_text(cfg.out / "probe.json", json.dumps(report, indent=2) + "\n")
    return report


# ------------------------------------------------------------------------------------------ labels and frames


def centre_phone_index(n_frames: int, hop: int, window: int = WINDOW) -> np.ndarray:
    """The 10 ms phone frame holding the centre sample ``hop * j + window // 2`` of each feature frame j. (n_frames,)"""
    return (np.arange(n_frames, dtype=np.int64) * hop + window // 2) // PHONE_HOP


def frame_phones(phones: Sequence[str], n_frames: int, hop: int, window: int = WINDOW) -> np.ndarray | None:
    """The phone of each of ``n_frames`` feature frames (hop ``hop`` samples); ``None`` if ``phones`` is too short."""
    idx = centre_phone_index(n_frames, hop, window)
    if n_frames and idx[-1] >= len(phones):
        return None
    return np.asarray(phones, dtype=str)[idx] if n_frames else np.zeros(0, dtype=str)


def sample_frames(frame_counts: Sequence[int], max_frames: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """``(utterance, sorted frame indices)`` pairs: whole utterances in a seeded random order until ``max_frames``
    frames are reached, then a seeded uniform subsample of exactly ``max_frames`` of their frames."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame_counts))
    taken, total = [], 0
    for u in order:
        if total >= max_frames:
            break
        if frame_counts[u] > 0:
            taken.append(int(u))
            total += int(frame_counts[u])
    taken.sort()
    offsets = np.cumsum([0] + [int(frame_counts[u]) for u in taken])
    keep = np.sort(rng.choice(total, max_frames, replace=False)) if total > max_frames else np.arange(total)
    out = []
    for k, u in enumerate(taken):
        lo, hi = np.searchsorted(keep, [offsets[k], offsets[k + 1]])
        if hi > lo:
            out.append((u, keep[lo:hi] - offsets[k]))
    return out


@dataclass
class Frames:
    x: np.ndarray  # (N, S * D) float32: S feature layers side by side
    y: np.ndarray  # (N,) phone symbols
    utterances: int  # utterances the frames come from
    split_frames: int  # feature frames in the whole split


def collect(manifest: Manifest, phones: list[list[str]], extractor: Any, max_frames: int, seed: int,
            what: str) -> Frames:
    """Features and centre phones of a seeded sample of the split's frames (see :func:`sample_frames`)."""
    from s3l.cluster.features import iter_features
    from s3l.progress import progress

    counts = [extractor.spec.frames(n) for n in manifest.sizes]
    plan = dict(sample_frames(counts, max_frames, seed))
    hop = SAMPLE_RATE // extractor.spec.label_rate
    n = sum(len(v) for v in plan.values())
    x = np.empty((n, extractor.spec.dim), dtype=np.float32)
    y = np.empty(n, dtype=object)
    at = 0
    with progress() as bar:
        task = bar.add_task(what, total=len(plan))
        for i, feats in iter_features(manifest, sorted(plan), extractor, on_done=lambda k: bar.advance(task, k)):
            labels = frame_phones(phones[i], len(feats), hop)
            if labels is None:  # load_split checked num_samples // 160 phones per line: cannot happen
                raise RuntimeError(f"{manifest.source}:{manifest.line_of(i)}: phones do not cover the features")
            rows = plan[i]
            x[at:at + len(rows)] = feats[rows]
            y[at:at + len(rows)] = labels[rows]
            at += len(rows)
    return Frames(x=x, y=y.astype(str), utterances=len(plan), split_frames=sum(counts))


# ------------------------------------------------------------------------------------------ the probe


def fit_probe(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray, *, l2: float = L2,
              max_iter: int = MAX_ITER, device: str = "cpu") -> dict[str, Any]:
    """Whiten with the fit frames' statistics, fit a multinomial logistic regression, score frame accuracy.

    Minimises the mean cross-entropy plus ``l2 / 2 * ||W||^2`` (bias not penalised) full-batch with L-BFGS from
    zero weights (deterministic). Eval frames whose phone never occurs in the fit frames count as errors.
    """
    import torch
    import torch.nn.functional as F

    classes, y = np.unique(y_fit, return_inverse=True)
    if len(classes) < 2:
        raise S3LError(f"the fit frames hold {len(classes)} phone(s); a probe needs at least 2")
    index = {p: i for i, p in enumerate(classes.tolist())}
    y_ev = np.array([index.get(p, -1) for p in y_eval.tolist()], dtype=np.int64)
    shift, transform = whitening(x_fit)
    a = torch.from_numpy(((x_fit - shift) @ transform).astype(np.float32)).to(device)  # (N, D')
    b = torch.from_numpy(((x_eval - shift) @ transform).astype(np.float32)).to(device)  # (M, D')
    target = torch.from_numpy(y.astype(np.int64)).to(device)
    w = torch.zeros(a.shape[1], len(classes), device=device, requires_grad=True)  # (D', C)
    bias = torch.zeros(len(classes), device=device, requires_grad=True)  # (C,)
    opt = torch.optim.LBFGS([w, bias], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=TOLERANCE)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(a @ w + bias, target) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    n_iter = int(opt.state[w]["n_iter"])
    with torch.no_grad():
        logits = a @ w + bias  # (N, C)
        loss = float(F.cross_entropy(logits, target))
        penalty = float(0.5 * l2 * w.pow(2).sum())
        fit_pred = logits.argmax(1).cpu().numpy()
        eval_pred = (b @ w + bias).argmax(1).cpu().numpy()
    return {
        "accuracy": float((eval_pred == y_ev).mean()),
        "fit_accuracy": float((fit_pred == y).mean()),
        "fit_loss": loss,  # mean cross-entropy on the fit frames, nats
        "penalty": penalty,
        "iterations": n_iter,
        "converged": n_iter < max_iter,
    }


def whitening(x: np.ndarray, floor: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (D,), T (D, D'))`` with ``(x - mean) @ T`` of zero mean and identity covariance (float64 statistics).

    Directions with variance below ``floor`` times the largest (constant or collinear features) are dropped.
    """
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((x.shape[1], x.shape[1]))
    for i in range(0, len(x), 16_384):  # (D, D) in float64 without a float64 copy of x
        xc = x[i:i + 16_384].astype(np.float64) - mean
        cov += xc.T @ xc
    lam, vec = np.linalg.eigh(cov / len(x))
    keep = lam > max(lam.max(), 0.0) * floor
    if not keep.any():
        raise S3LError("the fit frames' features are constant: nothing to probe")
    return mean.astype(np.float32), (vec[:, keep] / np.sqrt(lam[keep])).astype(np.float32)


def majority_accuracy(y_fit: np.ndarray, y_eval: np.ndarray) -> float:
    """Accuracy on the eval frames of always answering the fit frames' most frequent phone (ties: first symbol)."""
    counts = Counter(y_fit.tolist())
    top = min(counts, key=lambda p: (-counts[p], p))
    return float((y_eval == top).mean())


# ------------------------------------------------------------------------------------------ inputs and outputs


def _split(data: Path, split: str) -> tuple[Manifest, list[list[str]]]:
    s = load_split(data, split, ("phn",))  # checks one line per utterance and num_samples // 160 phones per line
    return s.manifest, [line.split() for line in s.labels["phn"]]


def _extractor(cfg: ProbeConfig, device: str, tmp: Path) -> tuple[Any, list[int], int]:
    """The feature extractor, the layers to probe and the width of one layer."""
    if cfg.feature == "mfcc":
        from s3l.cluster.features import MfccExtractor

        ex = MfccExtractor()
        return ex, [0], ex.spec.dim
    from s3l.analysis.sweep import AllLayersExtractor

    checkpoint = cfg.checkpoint
    if cfg.random_init is not None:
        checkpoint = random_checkpoint(cfg.random_init, cfg.seed, tmp / f"random-{cfg.random_init}.safetensors")
    assert checkpoint is not None
    ex = AllLayersExtractor(Path(checkpoint), device, cfg.batch_seconds)
    n = ex.num_states
    layers = list(range(n)) if cfg.layers is None else sorted(set(cfg.layers))
    bad = [layer for layer in layers if not 0 <= layer < n]
    if bad:
        raise S3LError(f"{checkpoint if cfg.random_init is None else '--random-init ' + cfg.random_init}: --layers "
                       f"{','.join(map(str, bad))} out of range; the model has layers 0..{n - 1} "
                       "(0 = transformer input, N = output of block N)")
    return ex, layers, ex.layer_dim


def random_checkpoint(name: str, seed: int, path: Path) -> Path:
    """Save a wav2vec 2.0 model of preset ``name`` with weights drawn after ``torch.manual_seed(seed)``."""
    import torch

    from s3l.models import build_pretrain_model, preset, save_model

    cfg = preset(name, "contrastive")
    torch.manual_seed(seed)
    save_model(path, build_pretrain_model(cfg))
    return path


def plot_probe(rows: Sequence[dict], majority: float, path: Path, *, mfcc: bool = False, title: str = "") -> None:
    """Eval frame accuracy against the layer (fit accuracy dotted), the majority-class accuracy as a dashed line."""
    from s3l.analysis.plots import _pyplot, _save

    plt = _pyplot()
    layers = [r["layer"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 3.8), dpi=110)
    ax.plot(layers, [r["accuracy"] for r in rows], marker="o", label="eval accuracy")
    ax.plot(layers, [r["fit_accuracy"] for r in rows], marker=".", linestyle=":", label="fit accuracy")
    ax.axhline(majority, color="grey", linestyle="--", label=f"majority class ({majority:.3f})")
    ax.set_xlabel("MFCC (one feature set)" if mfcc else "layer (0 = transformer input)")
    ax.set_ylabel("frame accuracy")
    ax.set_xticks(layers)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
