"""Frame alignment of unit (``.km``) and phone (``.phn``) label files, and their joint count table.

Rate rule. Both streams are brought to the common rate ``R = lcm(unit_rate, phone_rate)`` by repeating every
label: each unit ``R / unit_rate`` times, each phone ``R / phone_rate`` times. For an integer ratio this repeats
only the slower stream: 50 Hz units against 100 Hz phones repeat each unit twice (``u0 u0 u1 u1 ...``);
100 Hz units against 50 Hz phones repeat each phone twice; equal rates repeat nothing. Frame ``t`` at rate
``R`` then covers the same span of audio in both streams, because every label file starts at sample 0.

Length rule. Label files lose frames at the end to the feature window: Kaldi MFCCs (25 ms window, snip_edges)
give ``1 + (n - 400) // 160`` frames and the conv encoder ``1 + (n - 400) // 320`` at 50 Hz, against
``n // 160`` phone frames for ``n`` samples — up to 20 ms short in both cases. So after repetition the lengths may
differ by up to ``max_diff_ms`` (default 20 ms, i.e. ``floor(max_diff_ms * R / 1000)`` frames at rate ``R``:
two 100 Hz frames, one 50 Hz frame); the longer stream is then cut at the end to the shorter. A larger difference
is an error naming the line of both files, or, with ``skip_mismatch``, the utterance is left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s3l.analysis.metrics import mean_run_length
from s3l.errors import S3LError, where
from s3l.fileio import require_file
from s3l.manifest import read_text_lines


@dataclass(frozen=True)
class RateAlignment:
    unit_rate: int  # Hz
    phone_rate: int  # Hz
    max_diff_ms: float = 20.0  # tolerated length difference after repetition, in milliseconds

    def __post_init__(self) -> None:
        for name, v in (("unit rate", self.unit_rate), ("phone rate", self.phone_rate)):
            if not isinstance(v, int) or v <= 0:
                raise S3LError(f"the {name} must be a positive whole number of Hz, got {v!r}")
        if not self.max_diff_ms >= 0:
            raise S3LError(f"the tolerated length difference must be >= 0 ms, got {self.max_diff_ms}")

    @property
    def common_rate(self) -> int:
        return math.lcm(self.unit_rate, self.phone_rate)

    @property
    def unit_repeat(self) -> int:
        return self.common_rate // self.unit_rate

    @property
    def phone_repeat(self) -> int:
        return self.common_rate // self.phone_rate

    @property
    def tolerance(self) -> int:
        """Largest length difference (in frames at the common rate) that is trimmed rather than refused."""
        return int(math.floor(self.max_diff_ms * self.common_rate / 1000 + 1e-9))

    def describe(self) -> str:
        return (
            f"units {self.unit_rate} Hz x{self.unit_repeat}, phones {self.phone_rate} Hz x{self.phone_repeat} "
            f"-> {self.common_rate} Hz; up to {self.tolerance} frame(s) trimmed"
        )


def align_pair(units: np.ndarray, phones: np.ndarray, rates: RateAlignment) -> tuple[np.ndarray, np.ndarray] | None:
    """Both sequences at the common rate, cut to equal length; ``None`` if they differ by more than allowed."""
    u = np.repeat(units, rates.unit_repeat)  # (T_u * r_u,)
    p = np.repeat(phones, rates.phone_repeat)  # (T_p * r_p,)
    if abs(len(u) - len(p)) > rates.tolerance:
        return None
    n = min(len(u), len(p))
    return u[:n], p[:n]


# ------------------------------------------------------------------------------------------- label files


def read_unit_lines(path: str | Path, num_units: tuple[int, str] | None = None) -> list[np.ndarray]:
    """A ``.km`` file: one line per utterance of space-separated non-negative integer unit ids, each below K when
    ``num_units`` = (K, the file that says so) is given."""
    path = require_file(path, "unit label file")
    out: list[np.ndarray] = []
    for lineno, line in enumerate(read_text_lines(path), start=1):
        tokens = line.split()
        try:
            ids = np.array([int(t) for t in tokens], dtype=np.int64)
        except ValueError:
            bad = next(t for t in tokens if not _is_int(t))
            raise S3LError(f"{where(path, lineno)}: unit ids must be integers, got {bad[:20]!r}") from None
        if ids.size and ids.min() < 0:
            raise S3LError(f"{where(path, lineno)}: negative unit id {int(ids.min())}")
        if num_units is not None and ids.size and ids.max() >= num_units[0]:
            k, source = num_units
            raise S3LError(f"{where(path, lineno)}: unit id {int(ids.max())} out of range: {source} has K = {k} "
                           f"units (ids 0..{k - 1})")
        out.append(ids)
    if not out:
        raise S3LError(f"{path}: empty unit label file")
    return out


def read_phone_lines(path: str | Path) -> list[list[str]]:
    """A ``.phn`` file: one line per utterance of space-separated phone symbols, one per frame."""
    path = require_file(path, "phone label file")
    lines = [line.split() for line in read_text_lines(path)]
    if not lines:
        raise S3LError(f"{path}: empty phone label file")
    return lines


def _is_int(t: str) -> bool:
    try:
        int(t)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------- counting


class _Index:
    """Maps labels (unit ids or phone symbols) to compact table indices in order of first appearance."""

    def __init__(self) -> None:
        self.index: dict = {}

    def encode(self, labels: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(labels, return_inverse=True)
        cols = np.array([self.index.setdefault(x.item(), len(self.index)) for x in uniq], dtype=np.int64)
        return cols[inverse.reshape(-1)]

    def labels(self) -> list:
        return list(self.index)


@dataclass
class JointCounts:
    """Co-occurrence counts of phones (rows) and units (columns) at the common rate, plus bookkeeping."""

    counts: np.ndarray  # (P, U) int64
    phones: list[str]  # row labels
    units: list[int]  # column labels (unit ids)
    utterances: int  # counted
    skipped: list[int] = field(default_factory=list)  # 1-based lines left out by skip_mismatch
    trimmed_utterances: int = 0  # counted after cutting a length difference within tolerance
    trimmed_frames: int = 0  # frames at the common rate cut off in total
    unit_segment_frames: float = float("nan")  # mean unit run length, frames at the unit rate
    phone_segment_frames: float = float("nan")  # mean phone run length, frames at the phone rate


class JointCounter:
    """Accumulates a (phone, unit) count table utterance by utterance; the table grows as labels appear."""

    def __init__(self) -> None:
        self.phone_index = _Index()
        self.unit_index = _Index()
        self.counts = np.zeros((0, 0), dtype=np.int64)

    def add(self, units: np.ndarray, phones: np.ndarray) -> None:
        """Count one utterance of equal-length aligned ``units`` (ids) and ``phones`` (symbols)."""
        if len(units) == 0:
            return
        rows = self.phone_index.encode(np.asarray(phones))
        cols = self.unit_index.encode(np.asarray(units))
        p, u = len(self.phone_index.index), len(self.unit_index.index)
        if (p, u) != self.counts.shape:
            grown = np.zeros((p, u), dtype=np.int64)
            grown[: self.counts.shape[0], : self.counts.shape[1]] = self.counts
            self.counts = grown
        self.counts += np.bincount(rows * u + cols, minlength=p * u).reshape(p, u)


def count_files(
    units_path: str | Path, phones_path: str | Path, rates: RateAlignment, *, skip_mismatch: bool = False,
    num_units: tuple[int, str] | None = None,
) -> JointCounts:
    """Read a ``.km`` and a ``.phn`` file line by line, align each utterance and count co-occurrences.
    ``num_units``: (K, its source); a unit id >= K is refused."""
    units = read_unit_lines(units_path, num_units)
    phones = read_phone_lines(phones_path)
    if len(units) != len(phones):
        raise S3LError(
            f"{units_path} has {len(units)} lines but {phones_path} has {len(phones)}; "
            "both must have one line per utterance in the same manifest order"
        )
    counter = JointCounter()
    result = JointCounts(counts=counter.counts, phones=[], units=[], utterances=0)
    kept_units: list[np.ndarray] = []
    kept_phones: list[list[str]] = []
    for lineno, (u, p) in enumerate(zip(units, phones), start=1):
        pair = align_pair(u, np.asarray(p, dtype=str), rates)
        if pair is None:
            if skip_mismatch:
                result.skipped.append(lineno)
                continue
            raise S3LError(_mismatch(units_path, phones_path, lineno, len(u), len(p), rates))
        au, ap = pair
        cut = len(u) * rates.unit_repeat + len(p) * rates.phone_repeat - 2 * len(au)
        if cut:
            result.trimmed_utterances += 1
            result.trimmed_frames += cut
        counter.add(au, ap)
        kept_units.append(u)
        kept_phones.append(p)
        result.utterances += 1
    if counter.counts.sum() == 0:
        raise S3LError(
            f"{units_path}: no frames to analyse ({len(result.skipped)} of {len(units)} utterances skipped "
            "for length mismatch)"
        )
    result.counts = counter.counts
    result.phones = [str(x) for x in counter.phone_index.labels()]
    result.units = [int(x) for x in counter.unit_index.labels()]
    result.unit_segment_frames = mean_run_length(kept_units)
    result.phone_segment_frames = mean_run_length(_phone_codes(kept_phones))
    return result


def _phone_codes(lines: list[list[str]]) -> Iterator[np.ndarray]:
    table: dict[str, int] = {}
    for line in lines:
        yield np.array([table.setdefault(s, len(table)) for s in line], dtype=np.int64)


def _mismatch(units_path, phones_path, lineno: int, nu: int, npn: int, rates: RateAlignment) -> str:
    r = rates.common_rate
    return (
        f"{where(units_path, lineno)}: {nu} units at {rates.unit_rate} Hz ({nu * rates.unit_repeat} frames at "
        f"{r} Hz) but {where(phones_path, lineno)} has {npn} phones at {rates.phone_rate} Hz "
        f"({npn * rates.phone_repeat} frames); more than {rates.tolerance} frame(s) apart — wrong --unit-rate / "
        "--phone-rate, or files of different splits? (--skip-mismatch leaves such utterances out)"
    )
