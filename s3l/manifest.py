"""fairseq-compatible manifests: the files every stage reads and writes.

Formats (version 1, documented in README "File formats"):

``{split}.tsv``   first line: absolute audio root; then ``relative/path<TAB>num_samples`` (16 kHz, after resampling)
``{split}.wrd``   one normalised upper-case transcript per utterance, in tsv order
``{split}.ltr``   the same as letters separated by spaces, ``|`` after every word (fairseq's libri_labels.py)
``{split}.phn``   one phone symbol per 10 ms frame (``num_samples // 160`` frames), space separated
``dict.ltr.txt``  ``SYMBOL COUNT`` per line, most frequent first (fairseq Dictionary format)
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3l.audio import PHONE_HOP, read_audio
from s3l.errors import S3LError
from s3l.fileio import atomic_write_lines, check_overwrite

LABEL_EXTS = ("wrd", "ltr", "phn")


@dataclass(frozen=True)
class Manifest:
    """An audio list: ``root / paths[i]`` holds ``sizes[i]`` samples at 16 kHz."""

    root: Path
    paths: tuple[str, ...]
    sizes: tuple[int, ...]
    source: Path  # the .tsv it was read from (for error messages)

    def __len__(self) -> int:
        return len(self.paths)

    def audio_path(self, i: int) -> Path:
        return self.root / self.paths[i]

    def line_of(self, i: int) -> int:
        """1-based line of utterance ``i`` in the tsv (line 1 is the root)."""
        return i + 2

    def utt_id(self, i: int) -> str:
        return self.paths[i].rsplit(".", 1)[0]

    def load(self, i: int, *, downmix: bool = True) -> np.ndarray:
        """Read utterance ``i`` as float32 16 kHz mono; errors name the tsv line.

        Multi-channel audio is averaged: whether to accept it is decided once, by ``s3l prep --downmix``;
        a manifest that lists such a file was written by a user who asked for it.
        """
        try:
            return read_audio(self.audio_path(i), downmix=downmix, expected_samples=self.sizes[i])
        except S3LError as e:
            raise S3LError(f"{self.source}:{self.line_of(i)}: {e}") from None


def read_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Parse and validate a ``.tsv`` manifest (format, positive sizes, and that each audio file exists)."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: manifest not found")
    lines = _read_text_lines(path)
    if not lines or not lines[0].strip():
        raise S3LError(f"{path}:1: expected the audio root directory on the first line")
    root = Path(lines[0].strip())
    paths: list[str] = []
    sizes: list[int] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            raise S3LError(f"{path}:{lineno}: empty line")
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise S3LError(f"{path}:{lineno}: expected 'relative/path<TAB>num_samples', got {line[:60]!r}")
        if int(parts[1]) <= 0:
            raise S3LError(f"{path}:{lineno}: num_samples must be positive")
        paths.append(parts[0])
        sizes.append(int(parts[1]))
    if not paths:
        raise S3LError(f"{path}: manifest lists no audio")
    if check_files:
        for i, rel in enumerate(paths):
            if not (root / rel).is_file():
                raise S3LError(f"{path}:{i + 2}: audio file {root / rel} not found")
    return Manifest(root=root, paths=tuple(paths), sizes=tuple(sizes), source=path)


def write_manifest(path: str | Path, root: str | Path, rows: Sequence[tuple[str, int]]) -> None:
    root = Path(root).resolve()
    atomic_write_lines(path, [str(root), *(f"{rel}\t{n}" for rel, n in rows)])


def read_label_lines(path: str | Path, manifest: Manifest) -> list[str]:
    """Read a per-utterance label file and check it has one line per manifest entry."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: label file not found (expected beside {manifest.source})")
    lines = _read_text_lines(path)
    if len(lines) != len(manifest):
        raise S3LError(
            f"{path}: {len(lines)} lines but {manifest.source} lists {len(manifest)} utterances; "
            "label files must have one line per utterance in manifest order"
        )
    return lines


@dataclass(frozen=True)
class Split:
    manifest: Manifest
    labels: dict[str, list[str]]  # extension -> one line per utterance


def split_files(data_dir: str | Path, split: str) -> dict[str, Path]:
    data_dir = Path(data_dir)
    return {ext: data_dir / f"{split}.{ext}" for ext in ("tsv", *LABEL_EXTS)}


def resolve_valid_split(data_dir: str | Path, name: str | None) -> str | None:
    """``--valid-split``: ``auto`` is ``dev`` if ``data_dir`` has it, else ``valid``; ``None``/``""``: none."""
    if not name:
        return None
    if name != "auto":
        return name
    for candidate in ("dev", "valid"):
        if (Path(data_dir) / f"{candidate}.tsv").is_file():
            return candidate
    raise S3LError(f"{data_dir}: no dev.tsv or valid.tsv to validate on; name one with --valid-split SPLIT, or "
                   "pass --valid-split '' for no validation")


def load_split(data_dir: str | Path, split: str, labels: Iterable[str] = (), *, check_files: bool = True) -> Split:
    """Read ``{split}.tsv`` and the requested label files (e.g. ``("ltr",)``), validating line counts."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise S3LError(f"{data_dir}: data directory not found")
    tsv = data_dir / f"{split}.tsv"
    if not tsv.is_file():
        have = sorted(p.stem for p in data_dir.glob("*.tsv"))
        raise S3LError(f"{tsv}: split '{split}' not found (available: {', '.join(have) or 'none'})")
    manifest = read_manifest(tsv, check_files=check_files)
    out = {ext: read_label_lines(data_dir / f"{split}.{ext}", manifest) for ext in labels}
    if "phn" in out:
        for i, line in enumerate(out["phn"]):
            want = phone_frames(manifest.sizes[i])
            got = len(line.split())
            if got != want:
                raise S3LError(
                    f"{data_dir / f'{split}.phn'}:{i + 1}: {got} phone frames, expected {want} "
                    f"for {manifest.sizes[i]} samples"
                )
    return Split(manifest=manifest, labels=out)


def write_split(
    out_dir: str | Path,
    split: str,
    root: str | Path,
    rows: Sequence[tuple[str, int]],
    *,
    words: Sequence[str] | None = None,
    phones: Sequence[Sequence[str]] | None = None,
) -> list[Path]:
    """Write ``{split}.tsv`` and, when given, ``.wrd``/``.ltr`` (from ``words``) and ``.phn``. Returns the paths.

    ``words`` must already be normalised (see :func:`normalize_transcript`); ``phones[i]`` must have
    ``phone_frames(rows[i][1])`` symbols.
    """
    out_dir = Path(out_dir)
    files = split_files(out_dir, split)
    written = [files["tsv"]]
    write_manifest(files["tsv"], root, rows)
    if words is not None:
        if len(words) != len(rows):
            raise ValueError("words and rows differ in length")
        atomic_write_lines(files["wrd"], words)
        atomic_write_lines(files["ltr"], (letters(w) for w in words))
        written += [files["wrd"], files["ltr"]]
    if phones is not None:
        if len(phones) != len(rows):
            raise ValueError("phones and rows differ in length")
        for (rel, n), ph in zip(rows, phones):
            if len(ph) != phone_frames(n):
                raise ValueError(f"{rel}: {len(ph)} phone frames for {n} samples")
        atomic_write_lines(files["phn"], (" ".join(p) for p in phones))
        written.append(files["phn"])
    return written


def outputs_for(out_dir: str | Path, splits: Iterable[str], *, labeled: bool, phones: bool) -> list[Path]:
    """The files :func:`write_split` would write, for overwrite checks before any work starts."""
    paths: list[Path] = []
    for split in splits:
        files = split_files(out_dir, split)
        paths.append(files["tsv"])
        if labeled:
            paths += [files["wrd"], files["ltr"]]
        if phones:
            paths.append(files["phn"])
    if labeled:
        paths.append(Path(out_dir) / "dict.ltr.txt")
    return paths


def prepare_outputs(out_dir: str | Path, paths: Iterable[Path], force: bool) -> None:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    check_overwrite(paths, force)


# ---------------------------------------------------------------------------------------------------- text


_NOT_WORD = re.compile(r"[^A-Z' ]+")


def normalize_transcript(text: str) -> str:
    """Upper-case, strip accents, keep letters and apostrophes, turn everything else into word breaks."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).upper()
    text = _NOT_WORD.sub(" ", text)
    words = [w.strip("'") for w in text.split()]
    return " ".join(w for w in words if w)


def letters(words: str) -> str:
    """``"HELLO WORLD"`` -> ``"H E L L O | W O R L D |"`` (fairseq libri_labels.py)."""
    return " ".join(words.replace(" ", "|")) + " |" if words else "|"


def phone_frames(num_samples: int) -> int:
    """Number of 10 ms phone frames for an utterance: frame i covers samples [160 i, 160 i + 160)."""
    return num_samples // PHONE_HOP


def write_dict(path: str | Path, counts: Counter) -> None:
    """fairseq Dictionary text format: ``SYMBOL COUNT``, most frequent first (ties by symbol)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    atomic_write_lines(path, (f"{sym} {n}" for sym, n in items))


def read_dict(path: str | Path) -> list[str]:
    """Symbols of a fairseq dictionary file, in file order."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: dictionary not found")
    symbols: list[str] = []
    for lineno, line in enumerate(_read_text_lines(path), start=1):
        parts = line.split()
        if len(parts) < 1 or len(parts) > 3:
            raise S3LError(f"{path}:{lineno}: expected 'SYMBOL COUNT'")
        if parts[0] in symbols:
            raise S3LError(f"{path}:{lineno}: duplicate symbol {parts[0]!r}")
        symbols.append(parts[0])
    if not symbols:
        raise S3LError(f"{path}: empty dictionary")
    return symbols


def letter_counts(ltr_lines: Iterable[str]) -> Counter:
    c: Counter = Counter()
    for line in ltr_lines:
        c.update(line.split())
    return c


def _read_text_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise S3LError(f"{path}:{line}: not valid UTF-8") from None
    return text.splitlines()


def read_text_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file; invalid UTF-8 is an :class:`S3LError` naming the file and line."""
    return _read_text_lines(Path(path))
