"""``s3l prep dir``: a manifest of unlabeled audio under a directory, like fairseq's wav2vec_manifest.py.

Every file under AUDIO_DIR (recursively; hidden files and directories such as macOS ``._*`` forks are
ignored) whose extension is one of ``exts`` (case-insensitive) goes into ``train.tsv``; with
``valid_percent`` > 0 a random fraction goes into ``valid.tsv`` instead. Unlike fairseq, which draws each
file independently, exactly ``round(valid_percent · N)`` files (at least one) are held out, drawn by
shuffling the sorted file list with ``seed``, so the split is reproducible and its size predictable.
The manifest root is AUDIO_DIR.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from s3l.errors import S3LError
from s3l.fileio import require_dir
from s3l.prep.common import Group, Item, Plan, PrepOptions, PrepResult, Problem, check_rel, run


@dataclass(frozen=True, kw_only=True)
class DirConfig(PrepOptions):
    root: Path  # directory searched recursively
    exts: tuple[str, ...] = ("flac", "wav")  # file extensions, without the dot
    valid_percent: float = 0.01  # fraction (0 <= p < 1) of files held out for valid.tsv, as fairseq
    seed: int = 42  # shuffle seed for the held-out files


def prepare_dir(cfg: DirConfig) -> PrepResult:
    return run(dir_plan(cfg.root, cfg.exts, cfg.valid_percent, cfg.seed), cfg)


def dir_plan(root: Path, exts: tuple[str, ...], valid_percent: float, seed: int) -> Plan:
    root = require_dir(root, "audio directory")
    if not 0 <= valid_percent < 1:
        raise S3LError(f"--valid-percent {valid_percent}: expected a fraction in [0, 1), e.g. 0.01 for 1%")
    suffixes = {"." + e.lower().lstrip(".") for e in exts}
    if not suffixes:
        raise S3LError("--ext: give at least one extension, e.g. flac,wav")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise S3LError(f"{root}: no audio files with extension {', '.join(sorted(suffixes))} found")
    plan = Plan("dir", root, groups={}, splits={}, labeled=False)
    items: list[Item] = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        if bad := check_rel(rel):
            plan.problems.append(Problem("train", str(f), bad))
        else:
            items.append(Item(f, rel))
    n_valid = 0
    if valid_percent > 0:
        n_valid = max(1, round(valid_percent * len(items)))
        if n_valid >= len(items):
            raise S3LError(f"{root}: {len(items)} file(s) cannot give a training set and a "
                           f"{valid_percent:.0%} validation set; lower --valid-percent")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_valid])
    plan.groups["train"] = Group(root, [it for i, it in enumerate(items) if i not in held])
    plan.splits["train"] = ["train"]
    if n_valid:
        plan.groups["valid"] = Group(root, [it for i, it in enumerate(items) if i in held])
        plan.splits["valid"] = ["valid"]
    return plan
