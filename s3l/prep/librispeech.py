"""``s3l prep librispeech``: one manifest per LibriSpeech split.

Layout (openslr.org/12): ``ROOT/SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac`` with one
``SPEAKER-CHAPTER.trans.txt`` per chapter, each line ``UTTERANCE-ID TRANSCRIPT``. ROOT may be the
``LibriSpeech`` directory, its parent, or a single split directory. Each split's manifest root is
``ROOT/SPLIT``; its lines are ``SPEAKER/CHAPTER/FILE.flac<TAB>num_samples`` sorted by path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s3l.errors import S3LError, where
from s3l.fileio import require_dir
from s3l.manifest import normalize_transcript, read_text_lines
from s3l.prep.common import Group, Item, Plan, PrepOptions, PrepResult, Problem, check_rel, run, subdirs


@dataclass(frozen=True, kw_only=True)
class LibriSpeechConfig(PrepOptions):
    root: Path  # LibriSpeech directory (or its parent, or one split directory)
    splits: tuple[str, ...] = ()  # only these split directories; empty = every split found


def prepare_librispeech(cfg: LibriSpeechConfig) -> PrepResult:
    return run(librispeech_plan(cfg.root, cfg.splits), cfg)


def librispeech_plan(root: Path, only: tuple[str, ...] = ()) -> Plan:
    root = require_dir(root, "LibriSpeech directory")
    found = find_splits(root)
    if not found:
        raise S3LError(f"{root}: no LibriSpeech split found (expected ROOT/SPLIT/SPEAKER/CHAPTER/*.flac)")
    if only:
        missing = [s for s in only if s not in found]
        if missing:
            raise S3LError(f"{root}: split '{missing[0]}' not found (available: {', '.join(sorted(found))})")
        found = {s: found[s] for s in only}
    plan = Plan("librispeech", root, groups={}, splits={}, labeled=True)
    for name in sorted(found):
        items = [it for spk in subdirs(found[name]) for ch in subdirs(spk)
                 for it in chapter_items(ch, found[name], name, plan.problems)]
        plan.groups[name] = Group(found[name], items)
        plan.splits[name] = [name]
    return plan


def find_splits(root: Path) -> dict[str, Path]:
    """Split name -> directory: children of ROOT (or of ROOT/LibriSpeech) laid out SPEAKER/CHAPTER/files."""
    if _is_split(root):
        return {root.name: root}
    for base in (root, root / "LibriSpeech"):
        if base.is_dir():
            found = {d.name: d for d in subdirs(base) if _is_split(d)}
            if found:
                return found
    return {}


def _is_split(d: Path) -> bool:
    return any(True for _ in d.glob("*/*/*.trans.txt")) or any(True for _ in d.glob("*/*/*.flac"))


def read_transcripts(path: Path, group: str, problems: list[Problem]) -> dict[str, tuple[str, int]]:
    """``UTTERANCE-ID TEXT`` lines -> {id: (normalised text, line)}; malformed lines become problems."""
    out: dict[str, tuple[str, int]] = {}
    for lineno, line in enumerate(read_text_lines(path), start=1):
        if not line.strip():
            continue
        utt, _, text = line.strip().partition(" ")
        if utt in out:
            problems.append(Problem(group, where(path, lineno), f"duplicate utterance id {utt!r}"))
            continue
        out[utt] = (normalize_transcript(text), lineno)
    return out


def chapter_items(chapter: Path, root: Path, group: str, problems: list[Problem]) -> list[Item]:
    """The utterances of one ``SPEAKER/CHAPTER`` directory, cross-checked against its transcript file."""
    flacs = sorted(p for p in chapter.glob("*.flac") if p.is_file() and not p.name.startswith("."))
    trans = chapter / f"{chapter.parent.name}-{chapter.name}.trans.txt"
    if not trans.is_file():
        problems += [Problem(group, str(f), f"missing transcript (no {trans.name} beside it)") for f in flacs]
        return []
    texts = read_transcripts(trans, group, problems)
    stems = {f.stem for f in flacs}
    for utt, (_, lineno) in texts.items():
        if utt not in stems:
            problems.append(Problem(group, where(trans, lineno), f"transcript for {utt} but {utt}.flac not found"))
    items: list[Item] = []
    for f in flacs:
        rel = f.relative_to(root).as_posix()
        if f.stem not in texts:
            problems.append(Problem(group, str(f), f"missing transcript (no line for {f.stem} in {trans})"))
        elif not texts[f.stem][0]:
            problems.append(Problem(group, where(trans, texts[f.stem][1]), f"empty transcript for {f.stem}"))
        elif bad := check_rel(rel):
            problems.append(Problem(group, str(f), bad))
        else:
            items.append(Item(f, rel, words=texts[f.stem][0]))
    return items
