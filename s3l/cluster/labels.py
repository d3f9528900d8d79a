"""Label sets: the fitted k-means model file and the unit label files HuBERT pre-training reads.

A label set directory holds (format version 1, README "File formats")::

    {split}.km           one line per utterance in tsv order: space-separated unit ids, one per feature frame
    dict.km.txt          ``i COUNT`` for i = 0..K-1 in id order (fairseq Dictionary; COUNT = fit frames in cluster i)
    kmeans.safetensors   s3l checkpoint, kind "kmeans": tensor ``centroids`` (K, d) + metadata (see save_kmeans)
    labels.json          {"format_version", "label_rate", "feature", "layer", "k", "columns", "checkpoint_hash"}
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s3l.checkpoint import load_checkpoint, save_checkpoint
from s3l.cluster.features import MFCC_DIM, MFCC_SUBSPACES, FeatureSpec
from s3l.errors import S3LError
from s3l.fileio import atomic_open, atomic_write_lines, atomic_write_text

MODEL_FILE = "kmeans.safetensors"
DICT_FILE = "dict.km.txt"
LABELS_JSON = "labels.json"
LABELS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LabelSet:
    """One k-means model and its label files: K clusters over feature columns ``cols`` (None = all)."""

    name: str  # sub-directory of --out ("" = --out itself)
    k: int
    cols: tuple[int, int] | None = None
    subspace: str | None = None  # "static", "delta", "ddelta" or "a:b"

    def dir(self, out: Path) -> Path:
        return out / self.name if self.name else out


def parse_subspaces(items: Sequence[str], feature: str, dim: int | None) -> list[tuple[str, tuple[int, int]]]:
    """``--product`` entries: MFCC names (static, delta, ddelta) or column ranges ``a:b``."""
    out = []
    for item in items:
        if item in MFCC_SUBSPACES:
            if feature != "mfcc":
                raise S3LError(f"--product {item}: named subspaces are MFCC blocks; use column ranges a:b for "
                               f"{feature} features")
            out.append((item, MFCC_SUBSPACES[item]))
            continue
        parts = item.split(":")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise S3LError(f"--product {item!r}: expected static, delta, ddelta or a column range a:b")
        a, b = int(parts[0]), int(parts[1])
        limit = dim if dim is not None else (MFCC_DIM if feature == "mfcc" else None)
        if a >= b or (limit is not None and b > limit):
            raise S3LError(f"--product {item}: empty or out-of-range columns (feature dim {limit})")
        out.append((f"d{a}-{b}", (a, b)))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise S3LError(f"--product lists a subspace twice: {','.join(items)}")
    return out


def plan_label_sets(ks: Sequence[int], subspaces: Sequence[tuple[str, tuple[int, int]]]) -> list[LabelSet]:
    """One label set per (K, subspace); a single plain K writes into --out itself, else ``k{K}`` / subspace /
    ``k{K}-{subspace}`` sub-directories."""
    if not ks:
        raise S3LError("--k needs at least one cluster count")
    for k in ks:
        if k < 1:
            raise S3LError(f"--k {k}: the number of clusters must be positive")
    if len(set(ks)) != len(ks):
        raise S3LError(f"--k lists a value twice: {','.join(map(str, ks))}")
    subs: Sequence[tuple[str | None, tuple[int, int] | None]] = subspaces or [(None, None)]
    sets = []
    for k in ks:
        for sub, cols in subs:
            parts = ([f"k{k}"] if len(ks) > 1 else []) + ([sub] if sub else [])
            sets.append(LabelSet(name="-".join(parts), k=k, cols=cols, subspace=sub))
    return sets


def save_kmeans(path: Path, centroids: np.ndarray, spec: FeatureSpec, ls: LabelSet, counts: np.ndarray,
                **meta: Any) -> None:
    """Write ``centroids`` (K, d) and ``counts`` (K,) with everything needed to apply the model again."""
    import torch

    save_checkpoint(path, {"centroids": torch.from_numpy(np.asarray(centroids, dtype=np.float32)),
                           "counts": torch.from_numpy(np.asarray(counts, dtype=np.int64))}, kind="kmeans",
                    feature=spec.feature, dim=spec.dim, label_rate=spec.label_rate, layer=spec.layer,
                    checkpoint=spec.checkpoint, checkpoint_hash=spec.checkpoint_hash, k=ls.k,
                    columns=list(ls.cols) if ls.cols else None, subspace=ls.subspace, label_set=ls.name, **meta)


@dataclass(frozen=True)
class KMeansModel:
    path: Path
    centroids: np.ndarray  # (K, d)
    counts: np.ndarray  # (K,)
    spec: FeatureSpec
    label_set: LabelSet
    meta: dict[str, Any]


def load_kmeans(path: str | Path) -> KMeansModel:
    path = Path(path)
    tensors, meta = load_checkpoint(path)
    if meta.get("kind") != "kmeans" or "centroids" not in tensors:
        raise S3LError(f"{path}: not a k-means model (kind {meta.get('kind')!r}); pass a kmeans.safetensors "
                       "written by `s3l cluster`")
    c = tensors["centroids"].numpy()
    cols = tuple(meta["columns"]) if meta.get("columns") else None
    spec = FeatureSpec(feature=meta["feature"], dim=int(meta["dim"]), label_rate=int(meta["label_rate"]),
                       layer=meta.get("layer"), checkpoint=meta.get("checkpoint"),
                       checkpoint_hash=meta.get("checkpoint_hash"))
    ls = LabelSet(name=meta.get("label_set") or "", k=c.shape[0], cols=cols, subspace=meta.get("subspace"))
    counts = tensors["counts"].numpy() if "counts" in tensors else np.zeros(c.shape[0], dtype=np.int64)
    return KMeansModel(path=path, centroids=c, counts=counts, spec=spec, label_set=ls, meta=meta)


def write_set_files(out_dir: Path, model: KMeansModel) -> None:
    """dict.km.txt, labels.json and (when it lives elsewhere) a copy of the model file."""
    atomic_write_lines(out_dir / DICT_FILE, (f"{i} {int(n)}" for i, n in enumerate(model.counts)))
    info = {"format_version": LABELS_FORMAT_VERSION, "label_rate": model.spec.label_rate,
            "feature": model.spec.feature, "layer": model.spec.layer, "k": int(model.centroids.shape[0]),
            "columns": list(model.label_set.cols) if model.label_set.cols else None,
            "checkpoint_hash": model.spec.checkpoint_hash, "model": MODEL_FILE}
    atomic_write_text(out_dir / LABELS_JSON, json.dumps(info, indent=2) + "\n")
    dest = out_dir / MODEL_FILE
    if not (dest.exists() and dest.resolve() == model.path.resolve()):
        with open(model.path, "rb") as src, atomic_open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)


def km_name(split: str, shard: int, num_shards: int) -> str:
    """``{split}.km``, or fairseq's ``{split}_{i}_{n}.km`` for one machine's part of a split."""
    return f"{split}.km" if num_shards == 1 else f"{split}_{shard}_{num_shards}.km"


def concat_parts(parts: Sequence[Path], dest: Path) -> None:
    with atomic_open(dest, "w") as out:
        for p in parts:
            with open(p, encoding="utf-8") as f:
                shutil.copyfileobj(f, out)


def check_km(path: Path, frames: Sequence[int], k: int, source: Path) -> None:
    """A .km file has one line per utterance (``len(frames)``), ``frames[i]`` ids on line i, all in [0, K)."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            ids = np.array(line.split(), dtype=np.int64)
            if n > len(frames) or len(ids) != frames[n - 1]:
                want = frames[n - 1] if n <= len(frames) else "no line"
                raise S3LError(f"{path}:{n}: {len(ids)} labels, expected {want} for {source}")
            if len(ids) and (ids.min() < 0 or ids.max() >= k):
                raise S3LError(f"{path}:{n}: unit id out of range 0..{k - 1}")
    if n != len(frames):
        raise S3LError(f"{path}: {n} lines but {source} lists {len(frames)} utterances")


def merge_machine_shards(set_dir: Path, split: str, num_shards: int, frames: Sequence[int], k: int,
                         source: Path) -> bool:
    """Once every machine's ``{split}_{i}_{n}.km`` exists, concatenate them into ``{split}.km`` (checked)."""
    parts = [set_dir / km_name(split, i, num_shards) for i in range(num_shards)]
    if not all(p.is_file() for p in parts):
        return False
    concat_parts(parts, set_dir / f"{split}.km")
    check_km(set_dir / f"{split}.km", frames, k, source)
    return True
