"""What every ``s3l prep`` preparer shares: scanning, validation, skip reports, writing and the summary.

A preparer (``librispeech.py``, ``librilight.py``, ``timit.py``, ``folder.py``) only knows its corpus layout.
It lists the corpus as a :class:`Plan`: named *groups* of :class:`Item` (files sharing one audio root, e.g. one
LibriSpeech split or one Libri-light fold), the groups each output split is made of, and the problems it met
while listing (a missing transcript, a transcript line without audio). :func:`run` then

1. refuses to overwrite existing outputs without ``force`` (except the recorded partial output of an
   interrupted run, see :mod:`s3l.prep.partial`);
2. stops at the first problem, or with ``skip_bad`` sets the item aside;
3. reads every audio header (progress bar) and rejects unreadable, empty, multi-channel (unless ``downmix``)
   or too-short audio and alignments that run past the end of the audio, the same way;
4. writes each split's ``.tsv`` (and ``.wrd``/``.ltr``/``.phn``) atomically in sorted path order,
   ``dict.ltr.txt`` (and ``dict.phn.txt``), one ``skipped-{split}.tsv`` per split that lost items, and
   ``prep.json`` last (then the corpus is complete and ``prep.incomplete`` is removed); prints a summary table.

Only headers are read: a file whose header is valid but whose data is truncated is caught when it is loaded.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from s3l.audio import PHONE_HOP, SAMPLE_RATE, AudioInfo, audio_info, check_audio
from s3l.errors import S3LError
from s3l.fileio import atomic_write_lines, atomic_write_text
from s3l.manifest import letter_counts, letters, outputs_for, phone_frames, write_dict, write_split
from s3l.prep import partial

REPORT_NAME = "prep.json"
# An alignment may end this many 16 kHz samples (10 ms) past the audio before it counts as mismatched.
ALIGN_SLACK = PHONE_HOP


@dataclass(frozen=True, kw_only=True)
class PrepOptions:
    """Options every preparer takes."""

    out: Path  # output directory
    force: bool = False  # overwrite existing outputs
    skip_bad: bool = False  # skip bad items and write skipped-{split}.tsv instead of stopping
    downmix: bool = False  # accept multi-channel audio (channels are averaged when it is loaded)


@dataclass(frozen=True)
class Segment:
    """A labeled stretch of audio in samples at the file's own rate: ``[start, end)``."""

    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Item:
    """One utterance: an audio file, its path relative to the manifest root and its labels."""

    audio: Path
    rel: str
    words: str | None = None  # normalised transcript (labeled corpora)
    segments: tuple[Segment, ...] | None = None  # phone alignment (corpora with alignments)


@dataclass
class Group:
    root: Path  # manifest root; every item's audio is root / rel
    items: list[Item]


@dataclass(frozen=True)
class Problem:
    """Bad input: ``file`` (a path, or ``path:line``) and why it cannot be used."""

    group: str
    file: str
    reason: str

    def message(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass
class Plan:
    corpus: str  # e.g. "librispeech"
    source: Path  # the corpus directory the user gave
    groups: dict[str, Group]
    splits: dict[str, list[str]]  # output split -> names of the groups it is made of
    labeled: bool  # write .wrd/.ltr and dict.ltr.txt
    phones: bool = False  # write .phn and dict.phn.txt
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SplitSummary:
    name: str
    utterances: int
    samples: int  # total at 16 kHz
    skipped: int
    files: tuple[str, ...]

    @property
    def hours(self) -> float:
        return self.samples / SAMPLE_RATE / 3600


@dataclass(frozen=True)
class PrepResult:
    corpus: str
    out: Path
    splits: tuple[SplitSummary, ...]
    skipped: tuple[Problem, ...]
    warnings: tuple[str, ...]
    report: Path  # prep.json


def skip_report_path(out: Path, split: str) -> Path:
    return out / f"skipped-{split}.tsv"


def check_rel(rel: str) -> str | None:
    """Why a relative path cannot go into a tsv manifest, or None."""
    if "\t" in rel or "\n" in rel or "\r" in rel:
        return "file name contains a tab or newline, which the .tsv manifest format cannot hold"
    return None


def subdirs(d: Path) -> list[Path]:
    """Sorted visible subdirectories."""
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def frame_labels(segments: Sequence[Segment], num_frames: int, sample_rate: int) -> list[str]:
    """One label per 10 ms frame: frame ``i`` takes the segment covering its centre, 16 kHz sample ``160 i + 80``.

    Precisely: the last segment starting at or before the centre, so frames past the last segment take its
    label (and a frame before the first segment, which TIMIT never has, takes the first). ``segments`` are
    in samples at ``sample_rate`` and sorted by start; the comparison is exact integer arithmetic.
    """
    if not segments:
        raise ValueError("no segments")
    starts = [s.start * SAMPLE_RATE for s in segments]  # scaled so that both sides are integers
    out: list[str] = []
    for i in range(num_frames):
        centre = (PHONE_HOP * i + PHONE_HOP // 2) * sample_rate
        k = bisect_right(starts, centre) - 1
        out.append(segments[max(k, 0)].label)
    return out


def _check_item(item: Item, info: AudioInfo, downmix: bool) -> None:
    check_audio(item.audio, info, downmix=downmix)
    if item.segments:
        if item.segments[-1].end > info.frames + ALIGN_SLACK * info.sample_rate // SAMPLE_RATE:
            raise S3LError(
                f"{item.audio}: phone segments end at sample {item.segments[-1].end} but the audio has "
                f"{info.frames} samples; alignment and audio do not match"
            )


def _reason(e: S3LError, path: Path) -> str:
    msg = str(e)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def scan(plan: Plan, skip_bad: bool, downmix: bool) -> dict[str, list[tuple[Item, AudioInfo]]]:
    """Read every header; returns the usable items of each group (bad ones go to ``plan.problems``)."""
    from s3l.progress import progress

    total = sum(len(g.items) for g in plan.groups.values())
    kept: dict[str, list[tuple[Item, AudioInfo]]] = {name: [] for name in plan.groups}
    with progress() as bar:
        task = bar.add_task(f"scanning {plan.corpus}", total=total)
        for name, group in plan.groups.items():
            for item in group.items:
                try:
                    info = audio_info(item.audio)
                    _check_item(item, info, downmix)
                except S3LError as e:
                    if not skip_bad:
                        raise
                    plan.problems.append(Problem(name, str(item.audio), _reason(e, item.audio)))
                else:
                    kept[name].append((item, info))
                bar.advance(task)
    return kept


def planned_outputs(plan: Plan, out: Path) -> list[Path]:
    paths = outputs_for(out, plan.splits, labeled=plan.labeled, phones=plan.phones)
    paths += [skip_report_path(out, s) for s in plan.splits]
    if plan.phones:
        paths.append(out / "dict.phn.txt")
    return [*paths, out / REPORT_NAME]


def run(plan: Plan, opts: PrepOptions) -> PrepResult:
    """Validate, scan and write every split of ``plan`` into ``opts.out``; print and return the summary."""
    from s3l.console import console_err

    out = Path(opts.out)
    for name, groups in plan.splits.items():
        if not any(plan.groups[g].items for g in groups) and not any(p.group in groups for p in plan.problems):
            raise S3LError(f"{plan.source}: no audio found for split '{name}'")
    restart = partial.check_outputs(out, f"prep {plan.corpus}", planned_outputs(plan, out), opts.force)
    if plan.problems and not opts.skip_bad:
        more = len(plan.problems) - 1
        tail = f" (and {more} more problem{'s' * (more > 1)}; --skip-bad skips them)" if more else ""
        raise S3LError(plan.problems[0].message() + tail)
    for w in plan.warnings:
        console_err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)

    kept = scan(plan, opts.skip_bad, opts.downmix)
    partial.start(restart, out / REPORT_NAME)  # from here on a kill leaves a record: rerun without --force
    frames: dict[Path, list[str]] = {}  # phone labels per audio file, computed once

    def labels_of(it: Item, info: AudioInfo) -> list[str]:
        if it.audio not in frames:
            frames[it.audio] = frame_labels(it.segments or (), phone_frames(info.num_samples), info.sample_rate)
        return frames[it.audio]

    summaries: list[SplitSummary] = []
    for split, groups in plan.splits.items():
        items = sorted((x for g in groups for x in kept[g]), key=lambda x: x[0].rel)
        lost = sorted({(p.file, p.reason) for p in plan.problems if p.group in groups})
        if not items:
            raise S3LError(f"{plan.source}: every item of split '{split}' is bad ({len(lost)} skipped)")
        root = plan.groups[groups[0]].root
        rows = [(it.rel, info.num_samples) for it, info in items]
        words = [it.words or "" for it, _ in items] if plan.labeled else None
        phones = [labels_of(it, info) for it, info in items] if plan.phones else None
        files = write_split(out, split, root, rows, words=words, phones=phones)
        report = skip_report_path(out, split)
        if lost:
            atomic_write_lines(report, ["file\treason", *(f"{_escape(f)}\t{_escape(r)}" for f, r in lost)])
            files.append(report)
        elif report.exists():  # stale report of an earlier run (only reachable with --force or after a kill)
            report.unlink()
        summaries.append(SplitSummary(split, len(rows), sum(n for _, n in rows), len(lost),
                                      tuple(str(f) for f in files)))

    used = {g for groups in plan.splits.values() for g in groups}
    unique = [x for g in plan.groups if g in used for x in kept[g]]
    if plan.labeled:
        write_dict(out / "dict.ltr.txt", letter_counts(letters(it.words or "") for it, _ in unique))
    if plan.phones:
        counts: Counter = Counter()
        for it, info in unique:
            counts.update(labels_of(it, info))
        write_dict(out / "dict.phn.txt", counts)

    result = PrepResult(plan.corpus, out, tuple(summaries), tuple(plan.problems), tuple(plan.warnings),
                        out / REPORT_NAME)
    atomic_write_text(result.report, json.dumps(_as_json(plan, result), indent=2) + "\n")
    partial.finish(restart)
    show(result)
    return result


def _escape(field: str) -> str:
    """Keep one report row per line and two columns per row whatever the file name holds."""
    return field.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _as_json(plan: Plan, result: PrepResult) -> dict:
    return {
        "format_version": 1,
        "corpus": plan.corpus,
        "source": str(Path(plan.source).resolve()),
        "splits": {
            s.name: {"utterances": s.utterances, "samples": s.samples, "hours": round(s.hours, 4),
                     "skipped": s.skipped, "files": [Path(f).name for f in s.files]}
            for s in result.splits
        },
        "skipped": [{"group": p.group, "file": p.file, "reason": p.reason} for p in result.skipped],
        "warnings": list(result.warnings),
    }


def show(result: PrepResult) -> None:
    """Print the summary table (stdout) and where skipped items were reported."""
    from rich.table import Table

    from s3l.console import console, console_err

    table = Table(title=f"s3l prep {result.corpus}")
    for col in ("split", "utterances", "duration", "skipped"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for s in result.splits:
        secs = round(s.samples / SAMPLE_RATE)
        table.add_row(s.name, str(s.utterances), f"{secs // 3600}:{secs // 60 % 60:02d}:{secs % 60:02d}",
                      str(s.skipped))
    console.print(table)
    if result.skipped:
        reports = [f for s in result.splits for f in s.files if Path(f).name.startswith("skipped-")]
        console_err.print(f"[yellow]skipped {len(result.skipped)} bad item(s)[/]; see {', '.join(reports)}",
                          highlight=False, soft_wrap=True)
    console.print(f"wrote {result.out} (summary: {result.report.name})", highlight=False, soft_wrap=True)
