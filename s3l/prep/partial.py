"""Restartable ``s3l prep`` output: a record of what a preparer is writing, so a killed run is simply run again.

Before its first write a preparer records every output it is about to write in ``{out}/prep.incomplete``
(JSON, format 1: ``{"format_version": 1, "command": "prep synth", "outputs": [paths relative to out]}``). It
writes its summary (``prep.json``, ``synth.json``) last and then removes the record. So a directory holding the
record is an interrupted run's, and the same command run again may replace the recorded outputs without
``--force``: they are that run's partial output, or files the user already let a ``--force`` run replace. It
touches nothing else, and a complete corpus (no record) still needs ``--force``. Manifest readers ignore the
record: manifests made elsewhere (fairseq's scripts) have none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s3l.errors import S3LError
from s3l.fileio import atomic_write_text, check_overwrite

MARKER = "prep.incomplete"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Restart:
    """What a run will write into ``out`` and what an interrupted run there recorded."""

    out: Path
    command: str  # e.g. "prep synth"
    outputs: tuple[str, ...]  # paths relative to out that this run writes
    recorded: tuple[str, ...] = ()  # paths an interrupted run recorded (none without a record)
    same_command: bool = True  # the record (if any) is this command's


def check_outputs(out: Path, command: str, outputs: Sequence[Path], force: bool) -> Restart:
    """Create ``out`` and refuse, unless ``force``, to replace an existing output that is not the recorded partial
    output of an interrupted run of the same command."""
    out.mkdir(parents=True, exist_ok=True)
    names = tuple(_relative(out, p) for p in outputs)
    record = _read(out)
    if record is None:
        check_overwrite(outputs, force)
        return Restart(out, command, names)
    other, recorded = record
    if other != command and not force:
        raise S3LError(f"{out / MARKER}: {out} holds the partial output of an interrupted `s3l {other}`; rerun "
                       "that command, or pass --force")
    replaceable = set(recorded) if other == command else set()
    check_overwrite([p for p, n in zip(outputs, names) if n not in replaceable], force)
    return Restart(out, command, names, tuple(recorded), other == command)


def start(r: Restart, summary: Path) -> None:
    """Call before the first write: record the outputs, drop the ``summary`` of the corpus being replaced, and
    remove the files the interrupted run recorded that this run will not write again."""
    names = sorted(set(r.outputs) | set(r.recorded))
    doc = {"format_version": FORMAT_VERSION, "command": r.command, "outputs": names}
    atomic_write_text(r.out / MARKER, json.dumps(doc, indent=2) + "\n")
    summary.unlink(missing_ok=True)
    if r.same_command:
        for name in set(r.recorded) - set(r.outputs):
            path = r.out / name
            if path.is_file():
                path.unlink()


def finish(r: Restart) -> None:
    """Call after the summary is written: the corpus is complete."""
    (r.out / MARKER).unlink(missing_ok=True)


def _relative(out: Path, path: Path) -> str:
    return Path(path).relative_to(out).as_posix()


def _read(out: Path) -> tuple[str, list[str]] | None:
    path = out / MARKER
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        command, names = doc["command"], doc["outputs"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise S3LError(f"{path}: unreadable record of an interrupted `s3l prep`; remove it and pass --force") from None
    if not isinstance(command, str) or not isinstance(names, list) or not all(isinstance(n, str) for n in names) \
            or any(n.startswith("/") or ".." in Path(n).parts for n in names):
        raise S3LError(f"{path}: not a record written by `s3l prep`; remove it and pass --force")
    return command, names
