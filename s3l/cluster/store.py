"""Features spilled to disk and streamed back in bounded chunks.

One shard per extracting process, named as fairseq's simple_kmeans recipe names them so its scripts can read
them too::

    {split}_{rank}_{nshard}.npy   float32 (frames, dim), utterances concatenated   (numpy .npy, version 1.0)
    {split}_{rank}_{nshard}.len   frames of each utterance, one per line
    {split}_{rank}_{nshard}.idx   manifest index (0-based, tsv order) of each utterance, one per line

Shards are written sequentially through a file handle and read back through a short-lived memory map per chunk,
so neither writing nor reading keeps more than one chunk resident, however large the shard is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s3l.errors import S3LError
from s3l.fileio import atomic_open, atomic_write_lines

DTYPE = np.dtype("<f4")


def shard_stem(feat_dir: str | Path, split: str, rank: int, nshard: int) -> Path:
    return Path(feat_dir) / f"{split}_{rank}_{nshard}"


def shard_file(stem: Path, ext: str) -> Path:
    """``stem`` + ``.npy``/``.len``/``.idx`` (split names may contain dots, so not ``with_suffix``)."""
    return stem.parent / f"{stem.name}{ext}"


def write_shard(stem: Path, dim: int, total_frames: int,
                items: Iterable[tuple[int, np.ndarray]]) -> tuple[list[int], list[int]]:
    """Stream ``(utterance index, (T, dim) features)`` into ``stem.npy`` + ``.len`` + ``.idx``.

    ``total_frames`` (the sum of T, known from the manifest) goes in the .npy header up front.
    Returns the utterance indices and lengths in file order.
    """
    utts: list[int] = []
    lens: list[int] = []
    written = 0
    with atomic_open(shard_file(stem, ".npy"), "wb") as f:
        header = {"descr": DTYPE.str, "fortran_order": False, "shape": (total_frames, dim)}
        np.lib.format.write_array_header_1_0(f, header)
        for utt, feat in items:
            if feat.ndim != 2 or feat.shape[1] != dim:
                raise RuntimeError(f"feature shape {feat.shape} does not match dim {dim}")
            f.write(np.ascontiguousarray(feat, dtype=DTYPE).tobytes())
            written += feat.shape[0]
            utts.append(utt)
            lens.append(feat.shape[0])
        if written != total_frames:
            raise RuntimeError(f"{stem}.npy: wrote {written} frames, header says {total_frames}")
    atomic_write_lines(shard_file(stem, ".len"), (str(n) for n in lens))
    atomic_write_lines(shard_file(stem, ".idx"), (str(i) for i in utts))
    return utts, lens


@dataclass(frozen=True)
class Shard:
    path: Path  # the .npy file
    data_offset: int  # byte offset of row 0
    rows: int
    dim: int
    lengths: np.ndarray  # (U,) frames per utterance
    offsets: np.ndarray  # (U,) first row of each utterance
    utts: np.ndarray  # (U,) manifest index of each utterance

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as a fresh in-memory array (the memory map is closed again)."""
        if stop <= start:
            return np.empty((0, self.dim), dtype=np.float32)
        mm = np.memmap(self.path, dtype=DTYPE, mode="r", offset=self.data_offset + start * self.dim * 4,
                       shape=(stop - start, self.dim))
        out = np.array(mm, dtype=np.float32)
        del mm
        return out


def open_shard(stem: Path) -> Shard:
    npy = shard_file(stem, ".npy")
    if not npy.is_file():
        raise S3LError(f"{npy}: feature shard not found")
    with open(npy, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except ValueError as e:
            raise S3LError(f"{npy}: unreadable feature shard ({e})") from None
        offset = f.tell()
    if fortran or np.dtype(dtype) != DTYPE or len(shape) != 2:
        raise S3LError(f"{npy}: expected a C-order float32 (frames, dim) array, got {dtype} {shape}")
    lengths = np.array([int(x) for x in shard_file(stem, ".len").read_text().split()], dtype=np.int64)
    utts = np.array([int(x) for x in shard_file(stem, ".idx").read_text().split()], dtype=np.int64)
    if lengths.sum() != shape[0] or len(utts) != len(lengths):
        raise S3LError(f"{npy}: .len/.idx files do not match the array ({shape[0]} frames)")
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return Shard(path=npy, data_offset=offset, rows=int(shape[0]), dim=int(shape[1]), lengths=lengths,
                 offsets=offsets, utts=utts)


class FeatureStore:
    """Several shards read as one (rows, dim) matrix, in shard order; also a per-utterance cache."""

    def __init__(self, shards: list[Shard]) -> None:
        if not shards:
            raise ValueError("no feature shards")
        dims = {s.dim for s in shards}
        if len(dims) != 1:
            raise S3LError(f"feature shards disagree on the dimension: {sorted(dims)}")
        self.shards = shards
        self.dim = dims.pop()
        self.num_rows = sum(s.rows for s in shards)
        self._where = {int(u): (s, int(o), int(n)) for s in shards for u, o, n in zip(s.utts, s.offsets, s.lengths)}

    @classmethod
    def open(cls, stems: Iterable[Path]) -> FeatureStore:
        return cls([open_shard(s) for s in stems])

    def chunks(self, max_rows: int, cols: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``max_rows`` rows (columns ``cols[0]:cols[1]`` if given)."""
        max_rows = max(1, int(max_rows))
        for s in self.shards:
            for start in range(0, s.rows, max_rows):
                block = s.read(start, min(start + max_rows, s.rows))
                yield np.ascontiguousarray(block[:, cols[0]:cols[1]]) if cols else block

    def take(self, rows: np.ndarray, max_rows: int, cols: tuple[int, int] | None = None) -> np.ndarray:
        """The given global rows (sorted, unique) in one streaming pass: (len(rows), d)."""
        d = (cols[1] - cols[0]) if cols else self.dim
        if len(rows) == 0:
            return np.empty((0, d), dtype=np.float32)
        out = []
        base = 0
        lo = 0
        for block in self.chunks(max_rows, cols):
            hi = int(np.searchsorted(rows, base + len(block)))
            out.append(block[rows[lo:hi] - base])
            lo = hi
            base += len(block)
            if lo == len(rows):
                break
        return np.concatenate(out)

    def load_all(self, cols: tuple[int, int] | None = None) -> np.ndarray:
        """Every row in RAM (only the scikit-learn reference engine needs this)."""
        return self.take(np.arange(self.num_rows), 1 << 20, cols)

    def __contains__(self, utt: object) -> bool:
        return utt in self._where

    def __getitem__(self, utt: int) -> np.ndarray:
        s, o, n = self._where[utt]
        return s.read(o, o + n)

    def __len__(self) -> int:
        return len(self._where)
