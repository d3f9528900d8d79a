"""``s3l prep timit``: TIMIT (LDC93S1) with 39-class frame-level phone labels.

Layout: ``TRAIN|TEST/DRn/SPEAKER/UTT.{WAV,PHN,WRD,TXT}``; directory and file names match case-insensitively
(copies come in upper or lower case). ``.WAV`` is NIST SPHERE, read by libsndfile. ``.PHN`` lines are
``START END PHONE`` in samples of the audio's own rate (16 kHz in TIMIT); ``.TXT`` is ``START END text``.
``.WRD`` is not needed: ``.wrd``/``.ltr`` come from ``.TXT`` (normalised: ``long-term`` becomes ``LONG TERM``).
The two SA sentences every speaker reads are excluded, as in the standard recipes.

Splits (Kaldi egs/timit/s5): ``train`` = every TRAIN speaker; ``dev`` = the 50-speaker development set and
``test`` = the 24-speaker core test set, both from TEST (the other 94 TEST speakers are unused). When TEST
lacks any of those 74 speakers (a subset or a generated tree), ``test`` = all of TEST and ``dev`` = 10% of
the TRAIN speakers (at least one; those with the smallest SHA-1 of their ID, so the choice is deterministic
and stable), with a warning.

``.phn``: the 61 TIMIT phones folded to the 39 classes of Lee & Hon (1989) (Kaldi conf/phones.60-48-39.map):
closures, pauses and ``h#`` become ``sil``. That map deletes the glottal stop ``q``; here its frames take the
class of the preceding phone (of the following one when an utterance starts with ``q``), so every frame keeps
a label and the 10 ms grid stays aligned. Frame ``i`` takes the segment covering 16 kHz sample ``160 i + 80``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from s3l.errors import S3LError, where
from s3l.fileio import require_dir
from s3l.manifest import normalize_transcript, read_text_lines
from s3l.prep.common import Group, Item, Plan, PrepOptions, PrepResult, Problem, Segment, run, subdirs

# Kaldi egs/timit/s5/conf/dev_spk.list: the 50-speaker development set.
DEV_SPEAKERS = frozenset("""
FAKS0 FDAC1 FJEM0 MGWT0 MJAR0 MMDB1 MMDM2 MPDF0 FCMH0 FKMS0 MBDG0 MBWM0 MCSH0 FADG0 FDMS0 FEDW0 MGJF0
MGLB0 MRTK0 MTAA0 MTDT0 MTHC0 MWJG0 FNMR0 FREW0 FSEM0 MBNS0 MMJR0 MDLS0 MDLF0 MDVC0 MERS0 FMAH0 FDRW0
MRCS0 MRJM4 FCAL1 MMWH0 FJSJ0 MAJC0 MJSW0 MREB0 FGJD0 FJMG0 MROA0 MTEB0 MJFC0 MRJR0 FMML0 MRWS1
""".split())
# Kaldi egs/timit/s5/conf/test_spk.list: the 24-speaker core test set (two men and one woman from each of
# the dialect regions DR1-DR8).
CORE_TEST_SPEAKERS = frozenset("""
MDAB0 MWBT0 FELC0 MTAS1 MWEW0 FPAS0 MJMP0 MLNT0 FPKT0 MLLL0 MTLS0 FJLM0
MBPM0 MKLT0 FNLP0 MCMJ0 MJDH0 FMGD0 MGRT0 MNJM0 FDHC0 MJLN0 MPAM0 FMLD0
""".split())

# 61 TIMIT phones -> 39 classes (Lee & Hon 1989; third column of Kaldi's phones.60-48-39.map), listed by
# class. Phones not listed map to themselves; "q" is handled by fold_phones.
_CLASSES = {
    "sil": "h# pau epi bcl dcl gcl kcl pcl tcl",
    "aa": "aa ao", "ah": "ah ax ax-h", "er": "er axr", "hh": "hh hv", "ih": "ih ix", "l": "l el",
    "m": "m em", "n": "n en nx", "ng": "ng eng", "sh": "sh zh", "uw": "uw ux",
}
_SELF = "ae aw ay b ch d dh dx eh ey f g iy jh k ow oy p r s t th uh v w y z"
FOLD_61_TO_39: dict[str, str] = {p: cls for cls, ps in _CLASSES.items() for p in ps.split()}
FOLD_61_TO_39.update({p: p for p in _SELF.split()})
GLOTTAL_STOP = "q"
TIMIT_PHONES = frozenset(FOLD_61_TO_39) | {GLOTTAL_STOP}  # the 61

DEV_FRACTION = 0.1  # of TRAIN speakers, when the standard dev speakers are absent
_UTT = re.compile(r"(s[aix]\d+)\.wav")  # SA1, SI1234, SX123 (lower-cased)


@dataclass(frozen=True, kw_only=True)
class TimitConfig(PrepOptions):
    root: Path  # directory holding TRAIN and TEST (or its parent)


def prepare_timit(cfg: TimitConfig) -> PrepResult:
    return run(timit_plan(cfg.root), cfg)


def fold_phones(segments: list[Segment]) -> list[Segment]:
    """Map 61 TIMIT phones to the 39 classes; ``q`` takes the preceding (else the following) class."""
    labels: list[str | None] = [FOLD_61_TO_39.get(s.label) for s in segments]
    for i in range(1, len(labels)):
        if labels[i] is None:
            labels[i] = labels[i - 1]
    for i in range(len(labels) - 2, -1, -1):
        if labels[i] is None:
            labels[i] = labels[i + 1]
    if any(lab is None for lab in labels):
        raise ValueError("only glottal stops")
    return [Segment(s.start, s.end, lab) for s, lab in zip(segments, labels)]  # type: ignore[arg-type]


def read_phn(path: Path) -> list[Segment]:
    """Parse and validate a ``.PHN`` file (61-phone labels); raises :class:`S3LError` naming file:line."""
    segs: list[Segment] = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise S3LError(f"{where(path, lineno)}: expected 'START END PHONE', got {line.strip()[:40]!r}")
        start, end, phone = int(parts[0]), int(parts[1]), parts[2].lower()
        if phone not in TIMIT_PHONES:
            raise S3LError(f"{where(path, lineno)}: {parts[2]!r} is not one of the 61 TIMIT phones")
        if end < start or (segs and start < segs[-1].start):
            raise S3LError(f"{where(path, lineno)}: segment {start}-{end} is out of order")
        segs.append(Segment(start, end, phone))
    if not segs:
        raise S3LError(f"{path}: no phone segments")
    if all(s.label == GLOTTAL_STOP for s in segs):
        raise S3LError(f"{path}: only glottal stops (q), which have no class of their own")
    return segs


def read_txt(path: Path) -> str:
    """The normalised sentence of a ``.TXT`` file (``START END text``)."""
    lines = [ln for ln in read_text_lines(path) if ln.strip()]
    parts = lines[0].split(maxsplit=2) if lines else []
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise S3LError(f"{where(path, 1)}: expected 'START END text'")
    words = normalize_transcript(parts[2] if len(parts) == 3 else "")
    if not words:
        raise S3LError(f"{where(path, 1)}: empty transcript")
    return words


def find_timit_root(root: Path) -> tuple[Path, list[Path], list[Path]]:
    """(base, TRAIN dirs, TEST dirs): ROOT itself or its one child that holds both, matched case-insensitively
    (a tree holding both ``TRAIN`` and ``train`` uses both)."""
    root = require_dir(root, "TIMIT directory")
    for base in (root, *subdirs(root)):
        parts: dict[str, list[Path]] = {}
        for d in subdirs(base):
            parts.setdefault(d.name.upper(), []).append(d)
        if "TRAIN" in parts and "TEST" in parts:
            return base, parts["TRAIN"], parts["TEST"]
        if base == root and ("TRAIN" in parts or "TEST" in parts):
            missing = "TEST" if "TRAIN" in parts else "TRAIN"
            raise S3LError(f"{root}: TIMIT tree has no {missing} directory")
    raise S3LError(f"{root}: not a TIMIT tree (expected TRAIN/DRn/SPEAKER and TEST/DRn/SPEAKER)")


def _speakers(parts: list[Path]) -> dict[str, Path]:
    """Speaker ID (upper case) -> directory, over ``PART/DRn/SPEAKER``."""
    out: dict[str, Path] = {}
    for spk in (spk for part in parts for region in subdirs(part) for spk in subdirs(region)):
        key = spk.name.upper()
        if key in out:
            raise S3LError(f"{spk}: speaker {key} also in {out[key]}; TIMIT speaker IDs must be unique")
        out[key] = spk
    return out


def dev_speakers_from_train(speakers: list[str]) -> list[str]:
    """The fallback dev set: ``DEV_FRACTION`` of the speakers (at least one), chosen by SHA-1 of the ID."""
    n = max(1, round(DEV_FRACTION * len(speakers)))
    return sorted(sorted(speakers, key=lambda s: hashlib.sha1(s.encode()).hexdigest())[:n])


def timit_plan(root: Path) -> Plan:
    base, train_dirs, test_dirs = find_timit_root(root)
    train_spk, test_spk = _speakers(train_dirs), _speakers(test_dirs)
    plan = Plan("timit", root, groups={}, splits={s: [s] for s in ("train", "dev", "test")},
                labeled=True, phones=True)
    standard = DEV_SPEAKERS | CORE_TEST_SPEAKERS
    missing = standard - set(test_spk)
    if not missing:
        assign = {"train": [train_spk[s] for s in sorted(train_spk)],
                  "dev": [test_spk[s] for s in sorted(DEV_SPEAKERS)],
                  "test": [test_spk[s] for s in sorted(CORE_TEST_SPEAKERS)]}
    else:
        if len(train_spk) < 2:
            raise S3LError(f"{train_dirs[0]}: needs at least 2 speakers to carve out a dev set")
        dev = set(dev_speakers_from_train(sorted(train_spk)))
        assign = {"train": [train_spk[s] for s in sorted(train_spk) if s not in dev],
                  "dev": [train_spk[s] for s in sorted(dev)],
                  "test": [test_spk[s] for s in sorted(test_spk)]}
        plan.warnings.append(
            f"{test_dirs[0]} lacks {len(missing)} of the {len(standard)} standard dev/core-test speakers "
            f"(e.g. {sorted(missing)[0]}): test = all {len(test_spk)} TEST speakers, "
            f"dev = {len(dev)} of the {len(train_spk)} TRAIN speakers"
        )
    for split, dirs in assign.items():
        items = [it for d in dirs for it in _speaker_items(d, base, split, plan.problems)]
        plan.groups[split] = Group(base, items)
    return plan


def _speaker_items(spk: Path, base: Path, group: str, problems: list[Problem]) -> list[Item]:
    files: dict[str, Path] = {}
    for p in sorted(spk.iterdir()):
        if p.is_file():
            if p.name.lower() in files:
                problems.append(Problem(group, str(p), f"both {files[p.name.lower()].name} and {p.name} exist"))
            files[p.name.lower()] = p
    items: list[Item] = []
    for name in sorted(files):
        m = _UTT.fullmatch(name)
        if not m or m.group(1).startswith("sa"):
            continue
        wav, stem = files[name], m.group(1)
        txt, phn = files.get(stem + ".txt"), files.get(stem + ".phn")
        if txt is None:
            problems.append(Problem(group, str(wav), "missing transcript (no .TXT beside it)"))
            continue
        if phn is None:
            problems.append(Problem(group, str(wav), "missing phone alignment (no .PHN beside it)"))
            continue
        try:
            words = read_txt(txt)
            segments = fold_phones(read_phn(phn))
        except S3LError as e:
            file, _, reason = str(e).partition(": ")
            problems.append(Problem(group, file, reason))
            continue
        items.append(Item(wav, wav.relative_to(base).as_posix(), words=words, segments=tuple(segments)))
    return items
