"""Label sets: the fitted k-means model file and the unit label files HuBERT pre-training reads.

A label set directory holds (format version 1, README "File formats")::

    {split}.km           one line per utterance in tsv order: space-separated unit ids, one per feature frame
    dict.km.txt          ``i COUNT`` for i = 0..K-1 in id order (fairseq Dictionary; COUNT = fit frames in cluster i)
    kmeans.safetensors   s3l checkpoint, kind "kmeans": tensor ``centroids`` (K, d) + metadata (see save_kmeans)
    labels.json          {"format_version": 2, "label_rate", "feature", "layer", "k", "columns", "checkpoint_hash",
                          "model", "files": {name: {"bytes", "sha256"}}}   -- written last: the set is complete
    labels.incomplete    present while `s3l cluster` writes into the directory (removed after labels.json)

Crash consistency. labels.json vouches for exactly the files it lists (size and SHA-256 prefix); `s3l cluster`
writes ``labels.incomplete`` before anything else, removes a labels.json that vouches for a file it is about to
replace, and writes labels.json only after every other file. A killed run therefore leaves either the old set
(still listed and unchanged) or no labels.json and the marker, which :func:`require_complete` refuses. Files that
a directory with the marker holds but its labels.json does not list are partial output of that run, which a
rerun may overwrite without ``--force``. Format 1 (s3l 0.1) listed no files and is trusted as it was.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s3l.checkpoint import file_hash, load_checkpoint, save_checkpoint
from s3l.cluster.features import MFCC_DIM, MFCC_SUBSPACES, FeatureSpec
from s3l.errors import S3LError
from s3l.fileio import atomic_open, atomic_write_lines, atomic_write_text

MODEL_FILE = "kmeans.safetensors"
DICT_FILE = "dict.km.txt"
LABELS_JSON = "labels.json"
INCOMPLETE = "labels.incomplete"
LABELS_FORMAT_VERSION = 2  # 2 lists the files of the set; 1 (s3l 0.1) did not


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


def write_set_files(out_dir: Path, model: KMeansModel, written: Sequence[str], carried: dict[str, dict]) -> None:
    """dict.km.txt, (when it lives elsewhere) a copy of the model file, then labels.json vouching for them, the
    label files ``written`` by this run and the ``carried`` entries (see :func:`still_valid`); then the
    directory is no longer marked incomplete."""
    atomic_write_lines(out_dir / DICT_FILE, (f"{i} {int(n)}" for i, n in enumerate(model.counts)))
    dest = out_dir / MODEL_FILE
    if not (dest.exists() and dest.resolve() == model.path.resolve()):
        with open(model.path, "rb") as src, atomic_open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    files = {**carried, **{name: file_entry(out_dir / name) for name in (*written, DICT_FILE, MODEL_FILE)}}
    info = {"format_version": LABELS_FORMAT_VERSION, "label_rate": model.spec.label_rate,
            "feature": model.spec.feature, "layer": model.spec.layer, "k": int(model.centroids.shape[0]),
            "columns": list(model.label_set.cols) if model.label_set.cols else None,
            "checkpoint_hash": model.spec.checkpoint_hash, "model": MODEL_FILE, "files": dict(sorted(files.items()))}
    atomic_write_text(out_dir / LABELS_JSON, json.dumps(info, indent=2) + "\n")
    (out_dir / INCOMPLETE).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- completeness


def file_entry(path: Path) -> dict[str, Any]:
    """What labels.json records of one file of the set."""
    return {"bytes": path.stat().st_size, "sha256": file_hash(path)}


def _matches(path: Path, entry: Any) -> bool:
    try:
        return (isinstance(entry, dict) and path.stat().st_size == entry.get("bytes")
                and file_hash(path) == entry.get("sha256"))
    except OSError:
        return False


def read_labels_json(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("files", {}), dict):
        raise S3LError(f"{path}: not a labels.json written by `s3l cluster`")
    return info


def recorded_label_rate(set_dir: Path) -> tuple[float, Path] | None:
    """The label rate (Hz) `s3l cluster` recorded for the label set in ``set_dir`` and the file that says so:
    labels.json, else kmeans.safetensors; None when neither records one (e.g. labels made by fairseq)."""
    info, model = set_dir / LABELS_JSON, set_dir / MODEL_FILE
    if info.is_file():
        rate, source = read_labels_json(info).get("label_rate"), info
    elif model.is_file():
        from s3l.checkpoint import read_metadata

        rate, source = read_metadata(model).get("label_rate"), model
    else:
        return None
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise S3LError(f"{source}: recorded label rate {rate!r} is not a positive number of Hz")
    return float(rate), source


def vouched_files(set_dir: Path) -> dict[str, dict]:
    """The files the labels.json of ``set_dir`` lists (none without one). A format-1 labels.json lists none, so
    outside an interrupted run its directory's label files, dictionary and model are taken as it stands."""
    path = set_dir / LABELS_JSON
    if not path.is_file():
        return {}
    try:
        info = read_labels_json(path)
    except S3LError:
        return {}  # unreadable: vouches for nothing
    if "files" in info:
        return dict(info["files"])
    if (set_dir / INCOMPLETE).exists():
        return {}
    names = [p.name for p in sorted(set_dir.glob("*.km"))] + [DICT_FILE, MODEL_FILE]
    return {n: file_entry(set_dir / n) for n in names if (set_dir / n).is_file()}


def replaceable(path: Path) -> bool:
    """``path`` is partial output of an interrupted `s3l cluster` run: a rerun may replace it without --force."""
    d = path.parent
    return (d / INCOMPLETE).exists() and path.name not in vouched_files(d)


def start_set(set_dir: Path, replaces: Sequence[str]) -> dict[str, dict]:
    """Before a run writes anything into ``set_dir``: mark it incomplete, then drop a labels.json that vouches for
    a file this run will replace (``replaces``: names of existing files). Returns what labels.json vouched for."""
    set_dir.mkdir(parents=True, exist_ok=True)
    before = vouched_files(set_dir)
    atomic_write_text(set_dir / INCOMPLETE, "an `s3l cluster` run is writing this label set (or was interrupted); "
                      "labels.json lists the files that are complete\n")
    if any(name in before for name in replaces):
        (set_dir / LABELS_JSON).unlink(missing_ok=True)
    return before


def still_valid(set_dir: Path, model_path: Path, listings: Sequence[dict[str, dict]],
                skip: Sequence[str]) -> dict[str, dict]:
    """Entries of earlier ``listings`` of ``set_dir`` that a new labels.json may keep: made with the same model
    file, not in ``skip`` (rewritten by this run) and still unchanged on disk."""
    model = file_entry(model_path)
    out: dict[str, dict] = {}
    for files in listings:
        if files.get(MODEL_FILE, {}).get("sha256") != model["sha256"]:
            continue
        for name, entry in files.items():
            if name not in skip and name not in (DICT_FILE, MODEL_FILE) and name not in out \
                    and _matches(set_dir / name, entry):
                out[name] = entry
    return out


def require_complete(set_dir: Path, names: Sequence[str]) -> dict[str, Any] | None:
    """The labels.json of ``set_dir`` once the files ``names`` are known to belong to one complete label set;
    None for a directory `s3l cluster` did not write (e.g. fairseq's labels). Refuses a partial or mixed set."""
    path = set_dir / LABELS_JSON
    interrupted = (set_dir / INCOMPLETE).exists()
    rerun = "rerun the `s3l cluster` command that writes it"
    if not path.is_file():
        if interrupted:
            raise S3LError(f"{set_dir}: incomplete label set (an `s3l cluster` run into it was interrupted); {rerun}")
        if (set_dir / MODEL_FILE).is_file():
            raise S3LError(f"{set_dir}: incomplete label set ({MODEL_FILE} but no {LABELS_JSON}); rerun `s3l "
                           "cluster` with --force")
        return None
    info = read_labels_json(path)
    if "files" not in info:  # format 1
        if interrupted:
            raise S3LError(f"{set_dir}: incomplete label set (an `s3l cluster` run into it was interrupted); {rerun}")
        return info
    for name in names:
        entry = info["files"].get(name)
        if entry is None and (set_dir / name).exists():
            how = rerun if interrupted else "rerun `s3l cluster` with --force"
            raise S3LError(f"{set_dir / name}: not part of the label set {path} lists (left by an interrupted or "
                           f"other run); {how}")
        if entry is not None and not _matches(set_dir / name, entry):
            raise S3LError(f"{set_dir / name}: not the file {path} lists (changed or replaced since); rerun "
                           "`s3l cluster` with --force")
    return info


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
                         source: Path, complete: Sequence[str]) -> bool:
    """Once every machine's ``{split}_{i}_{n}.km`` is ``complete`` (written by this run or vouched for with the same
    model), concatenate them into ``{split}.km`` (checked)."""
    parts = [km_name(split, i, num_shards) for i in range(num_shards)]
    if not all(p in complete for p in parts):
        return False
    concat_parts([set_dir / p for p in parts], set_dir / f"{split}.km")
    check_km(set_dir / f"{split}.km", frames, k, source)
    return True
