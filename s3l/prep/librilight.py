"""``s3l prep librilight``: the Libri-light limited-resource fine-tuning sets (Kahn et al. 2020, §3.3).

Layout of ``librispeech_finetuning`` (the ``librispeech_finetuning.tgz`` archive): ``1h/{0..5}/{clean,other}``
and ``9h/{clean,other}``, each holding LibriSpeech-style ``SPEAKER/CHAPTER/*.flac`` with
``SPEAKER-CHAPTER.trans.txt``. Splits written (the wav2vec 2.0 paper's 10 min / 1 h / 10 h sets):

``train-10min``  fold 0 of ``1h``
``train-1h``     all six folds of ``1h``
``train-10h``    ``1h`` plus ``9h``

Every fold and subset directory must be present, so a partial tree cannot silently give a smaller set. The
manifest root is the ``librispeech_finetuning`` directory (ROOT may be it or its parent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s3l.errors import S3LError
from s3l.fileio import require_dir
from s3l.prep.common import Group, Plan, PrepOptions, PrepResult, run, subdirs
from s3l.prep.librispeech import chapter_items

FOLDS_1H = tuple(f"1h/{k}" for k in range(6))
SUBSETS = ("clean", "other")
SPLITS = {
    "train-10min": ["1h/0"],
    "train-1h": list(FOLDS_1H),
    "train-10h": [*FOLDS_1H, "9h"],
}


@dataclass(frozen=True, kw_only=True)
class LibriLightConfig(PrepOptions):
    root: Path  # librispeech_finetuning directory or its parent


def prepare_librilight(cfg: LibriLightConfig) -> PrepResult:
    return run(librilight_plan(cfg.root), cfg)


def finetuning_root(root: Path) -> Path:
    root = require_dir(root, "Libri-light directory")
    for cand in (root / "librispeech_finetuning", root):
        if (cand / "1h").is_dir() or (cand / "9h").is_dir():
            return cand
    raise S3LError(f"{root}: not a Libri-light fine-tuning tree (expected librispeech_finetuning/1h and 9h)")


def librilight_plan(root: Path) -> Plan:
    base = finetuning_root(root)
    plan = Plan("librilight", root, groups={}, splits={k: list(v) for k, v in SPLITS.items()}, labeled=True)
    for group in (*FOLDS_1H, "9h"):
        items = []
        for subset in SUBSETS:
            d = base / group / subset
            if not d.is_dir():
                raise S3LError(f"{d}: directory not found; the Libri-light tree is incomplete")
            items += [it for spk in subdirs(d) for ch in subdirs(spk)
                      for it in chapter_items(ch, base, group, plan.problems)]
        plan.groups[group] = Group(base, items)
    return plan
