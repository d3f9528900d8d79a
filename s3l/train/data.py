"""Training data: audio with its labels, batches by total samples, cropping, a resumable sharded batch order.

fairseq semantics throughout (``audio_pretraining`` / ``hubert_pretraining`` tasks):

- utterances shorter than ``min_sample_size`` are skipped (and reported); in crop mode longer ones are cropped
  to ``max_sample_size``, in pad mode (fine-tuning) they are skipped;
- utterances are sorted by length (longest first, ties in a seeded random order) and cut into batches so that
  ``batch size x longest item <= max_tokens``; every item is cropped to the *shortest* item of its batch, so
  ``batch size x cropped length <= max_tokens`` too (crop mode), or padded to the longest (pad mode);
- the batch order is shuffled each epoch with ``seed + epoch`` and dealt round-robin to the processes;
- crop offsets depend only on ``(seed, epoch, batch id)``, so a batch is the same whatever the number of
  DataLoader workers, and a resumed run sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from s3l.audio import SAMPLE_RATE
from s3l.errors import S3LError
from s3l.manifest import Manifest, read_dict, read_label_lines

PAD_LABEL = -1  # padding value of token targets beyond ``target_lengths``
MAX_LABEL_DRIFT_S = 0.1  # audio and label durations may differ by this much (fairseq hubert_dataset's tolerance)


# ------------------------------------------------------------------------------------------------ labels


@dataclass(frozen=True)
class FrameLabels:
    """One HuBERT label set: a unit id per frame at ``rate`` Hz for every utterance of a manifest."""

    source: Path  # the .km file (for messages)
    rate: float  # labels per second (100 for MFCC units, 50 for transformer-layer units)
    num_classes: int  # entries of dict.km.txt
    units: tuple[np.ndarray, ...]  # one (T_lab,) integer array per utterance, values in [0, num_classes)


@dataclass(frozen=True)
class TokenLabels:
    """Transcript labels (fine-tuning): a sequence of vocabulary ids per utterance, never cropped."""

    source: Path
    ids: tuple[np.ndarray, ...]  # one (L,) integer array per utterance


def read_frame_labels(km_path: str | Path, dict_path: str | Path, manifest: Manifest, rate: float) -> FrameLabels:
    """Read ``{split}.km`` against ``dict.km.txt``; check line count, symbols and durations against ``manifest``."""
    km_path = Path(km_path)
    if rate <= 0:
        raise S3LError(f"{km_path}: label rate must be positive, got {rate}")
    symbols = read_dict(dict_path)
    lines = read_label_lines(km_path, manifest)
    lookup = {s: i for i, s in enumerate(symbols)}
    dtype = np.int16 if len(symbols) < 2**15 else np.int32
    units = []
    for i, line in enumerate(lines):
        toks = line.split()
        try:
            arr = np.fromiter((lookup[t] for t in toks), dtype=dtype, count=len(toks))
        except KeyError as e:
            raise S3LError(f"{km_path}:{i + 1}: unit {e.args[0]!r} is not in {dict_path}") from None
        label_s, audio_s = len(arr) / rate, manifest.sizes[i] / SAMPLE_RATE
        if abs(label_s - audio_s) > MAX_LABEL_DRIFT_S:
            guess = len(arr) / audio_s if audio_s > 0 else 0.0
            raise S3LError(
                f"{km_path}:{i + 1}: {len(arr)} labels at {rate:g} Hz last {label_s:.2f} s but the audio "
                f"({manifest.source}:{manifest.line_of(i)}) lasts {audio_s:.2f} s; wrong label rate "
                f"(these labels look like {guess:.0f} Hz) or labels from another manifest"
            )
        units.append(arr)
    return FrameLabels(source=km_path, rate=float(rate), num_classes=len(symbols), units=tuple(units))


def read_token_labels(path: str | Path, manifest: Manifest, vocab: Sequence[str]) -> TokenLabels:
    """Read a transcript file (e.g. ``{split}.ltr``) as ids into ``vocab``; unknown symbols name the line."""
    path = Path(path)
    lookup = {s: i for i, s in enumerate(vocab)}
    ids = []
    for i, line in enumerate(read_label_lines(path, manifest)):
        try:
            ids.append(np.array([lookup[t] for t in line.split()], dtype=np.int64))
        except KeyError as e:
            raise S3LError(f"{path}:{i + 1}: symbol {e.args[0]!r} is not in the vocabulary") from None
    return TokenLabels(source=path, ids=tuple(ids))


# ------------------------------------------------------------------------------------------------ batches


@dataclass(frozen=True)
class BatchSpec:
    """What the sampler hands the dataset: everything needed to build one batch deterministically."""

    epoch: int
    batch_id: int  # index into the fixed bucketed batch list
    indices: tuple[int, ...]  # manifest indices


@dataclass
class Batch:
    wave: torch.Tensor  # (B, S) float32
    lengths: torch.Tensor  # (B,) long, valid samples per row
    targets: list[torch.Tensor] = field(default_factory=list)  # per label set: (B, T_lab) long, PAD_LABEL-padded
    target_lengths: list[torch.Tensor] = field(default_factory=list)  # per label set: (B,) long
    indices: tuple[int, ...] = ()  # manifest indices of the rows

    @property
    def audio_seconds(self) -> float:
        return float(self.lengths.sum()) / SAMPLE_RATE

    def to(self, device: str | torch.device) -> Batch:
        nb = str(device).startswith("cuda")
        return Batch(
            wave=self.wave.to(device, non_blocking=nb),
            lengths=self.lengths.to(device, non_blocking=nb),
            targets=[t.to(device, non_blocking=nb) for t in self.targets],
            target_lengths=[t.to(device, non_blocking=nb) for t in self.target_lengths],
            indices=self.indices,
        )


@dataclass(frozen=True)
class Selection:
    """Utterances kept for training and how many were skipped."""

    indices: np.ndarray  # (N,) manifest indices kept
    sizes: np.ndarray  # (N,) effective sizes (capped at max_sample_size in crop mode)
    too_short: int
    too_long: int


def select(manifest: Manifest, *, min_sample_size: int, max_sample_size: int, crop: bool) -> Selection:
    """Skip utterances shorter than ``min_sample_size`` (and, without cropping, longer than ``max_sample_size``)."""
    sizes = np.asarray(manifest.sizes, dtype=np.int64)
    short = sizes < min_sample_size
    long_ = np.zeros_like(short) if crop else sizes > max_sample_size
    keep = np.flatnonzero(~short & ~long_)
    if len(keep) == 0:
        raise S3LError(
            f"{manifest.source}: no utterance left after skipping {int(short.sum())} shorter than "
            f"{min_sample_size} samples (--min-sample-size) and {int(long_.sum())} longer than {max_sample_size}"
        )
    eff = np.minimum(sizes[keep], max_sample_size) if crop else sizes[keep]
    return Selection(indices=keep, sizes=eff, too_short=int(short.sum()), too_long=int(long_.sum()))


def batch_by_size(sel: Selection, max_tokens: int, seed: int, source: Path | None = None) -> list[tuple[int, ...]]:
    """Cut length-sorted utterances into batches with ``len(batch) * longest <= max_tokens`` (fairseq)."""
    if len(sel.sizes) and int(sel.sizes.max()) > max_tokens:
        where = f"{source}: " if source else ""
        raise S3LError(
            f"{where}an utterance of {int(sel.sizes.max())} samples does not fit --max-tokens {max_tokens}; "
            "raise --max-tokens or lower --max-sample-size"
        )
    tie = np.random.default_rng(seed).permutation(len(sel.sizes))
    order = np.lexsort((tie, sel.sizes))[::-1]  # longest first, ties in a seeded random order
    batches: list[tuple[int, ...]] = []
    cur: list[int] = []
    longest = 0
    for j in order:
        size = int(sel.sizes[j])
        if cur and (len(cur) + 1) * max(longest, size) > max_tokens:
            batches.append(tuple(cur))
            cur, longest = [], 0
        cur.append(int(sel.indices[j]))
        longest = max(longest, size)
    if cur:
        batches.append(tuple(cur))
    return batches


class BatchOrder:
    """Per-epoch shuffled batch order, dealt round-robin to ``world`` processes, resumable at any position.

    Every process gets ``ceil(n / world)`` batches per epoch (the order wraps around to fill the last round)
    so that all processes take the same number of steps.
    """

    def __init__(self, batches: list[tuple[int, ...]], *, seed: int, rank: int = 0, world: int = 1,
                 shuffle: bool = True) -> None:
        if not batches:
            raise ValueError("no batches")
        self.batches, self.seed, self.rank, self.world, self.shuffle = batches, seed, rank, world, shuffle

    def __len__(self) -> int:
        return -(-len(self.batches) // self.world)

    def batch_ids(self, epoch: int) -> list[int]:
        """This process's batch ids for ``epoch``, in order."""
        n = len(self.batches)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        total = len(self) * self.world
        order = np.resize(order, total)  # wrap around so every process gets the same count
        return [int(b) for b in order[self.rank :: self.world]]

    def specs(self, epoch: int, start: int = 0) -> list[BatchSpec]:
        """Batches ``start, start + 1, ...`` of this process's share of ``epoch``."""
        return [BatchSpec(epoch, b, self.batches[b]) for b in self.batch_ids(epoch)[start:]]


# ------------------------------------------------------------------------------------------------ dataset


class AudioDataset(torch.utils.data.Dataset):
    """Builds a whole :class:`Batch` from a :class:`BatchSpec` (so DataLoader workers do the collation).

    ``crop=True``: every item is cropped to the batch's shortest (capped at ``max_sample_size``) at a random
    offset, frame labels cropped consistently (fairseq hubert_dataset: label offset ``round(start * r / 16000)``,
    length ``round(size * r / 16000)``, cut to what every row still has). ``crop=False``: zero-padded to the
    longest, ``lengths`` giving the valid samples.
    """

    def __init__(self, manifest: Manifest, labels: Sequence[FrameLabels | TokenLabels] = (), *, crop: bool,
                 max_sample_size: int, seed: int) -> None:
        if not crop and any(isinstance(lab, FrameLabels) for lab in labels):
            raise ValueError("frame labels need crop=True")
        self.manifest, self.labels, self.crop = manifest, list(labels), crop
        self.max_sample_size, self.seed = max_sample_size, seed

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, spec: BatchSpec) -> Batch | LoadError:  # type: ignore[override]
        try:
            waves = [self.manifest.load(i) for i in spec.indices]
        except S3LError as e:  # carried to the main process as a plain message (see iterate())
            return LoadError(str(e))
        if self.crop:
            return self._cropped(spec, waves)
        return self._padded(spec, waves)

    def _cropped(self, spec: BatchSpec, waves: list[np.ndarray]) -> Batch:
        rng = np.random.default_rng([self.seed, spec.epoch, spec.batch_id])
        size = min(self.max_sample_size, *(len(w) for w in waves))
        starts = [int(rng.integers(0, len(w) - size + 1)) for w in waves]
        wave = torch.from_numpy(np.stack([w[s : s + size] for w, s in zip(waves, starts)]))  # (B, S)
        batch = Batch(wave=wave, lengths=torch.full((len(waves),), size, dtype=torch.long), indices=spec.indices)
        for lab in self.labels:
            assert isinstance(lab, FrameLabels)
            seqs = [lab.units[i] for i in spec.indices]
            ratio = lab.rate / SAMPLE_RATE
            frm_starts = [int(round(s * ratio)) for s in starts]
            frm_size = min(int(round(size * ratio)), *(len(t) - s for t, s in zip(seqs, frm_starts)))
            frm_size = max(frm_size, 0)
            tgt = np.stack([t[s : s + frm_size] for t, s in zip(seqs, frm_starts)]).astype(np.int64)
            batch.targets.append(torch.from_numpy(tgt))  # (B, T_lab)
            batch.target_lengths.append(torch.full((len(waves),), frm_size, dtype=torch.long))
        return batch

    def _padded(self, spec: BatchSpec, waves: list[np.ndarray]) -> Batch:
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
        wave = torch.zeros(len(waves), int(lengths.max()))  # (B, S)
        for r, w in enumerate(waves):
            wave[r, : len(w)] = torch.from_numpy(w)
        batch = Batch(wave=wave, lengths=lengths, indices=spec.indices)
        for lab in self.labels:
            assert isinstance(lab, TokenLabels)
            seqs = [lab.ids[i] for i in spec.indices]
            tl = torch.tensor([len(s) for s in seqs], dtype=torch.long)
            tgt = torch.full((len(seqs), max(int(tl.max()), 1)), PAD_LABEL, dtype=torch.long)  # (B, L)
            for r, s in enumerate(seqs):
                tgt[r, : len(s)] = torch.from_numpy(s.astype(np.int64))
            batch.targets.append(tgt)
            batch.target_lengths.append(tl)
        return batch


@dataclass(frozen=True)
class LoadError:
    message: str


@dataclass(frozen=True)
class Data:
    """One split ready for the loop: the dataset and this process's batch order."""

    dataset: AudioDataset
    order: BatchOrder


def make_data(manifest: Manifest, labels: Sequence[FrameLabels | TokenLabels] = (), *, crop: bool, max_tokens: int,
              max_sample_size: int, min_sample_size: int, seed: int, rank: int = 0, world: int = 1,
              shuffle: bool = True) -> tuple[Data, Selection]:
    """Select, bucket and shard one split (crop mode for pre-training, pad mode for fine-tuning)."""
    sel = select(manifest, min_sample_size=min_sample_size, max_sample_size=max_sample_size, crop=crop)
    batches = batch_by_size(sel, max_tokens, seed, manifest.source)
    dataset = AudioDataset(manifest, labels, crop=crop, max_sample_size=max_sample_size, seed=seed)
    return Data(dataset, BatchOrder(batches, seed=seed, rank=rank, world=world, shuffle=shuffle)), sel


def _identity(x: object) -> object:
    return x


def loader(dataset: AudioDataset, specs: list[BatchSpec], num_workers: int) -> torch.utils.data.DataLoader:
    """A DataLoader over ready-made batch specs. It draws its worker seeds from a private generator, so
    creating one never advances the global torch RNG (a resumed run must see the same random stream)."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=specs, collate_fn=_identity, num_workers=num_workers,
        generator=torch.Generator(), pin_memory=torch.cuda.is_available(),
        prefetch_factor=2 if num_workers > 0 else None,
    )


def iterate(batches: torch.utils.data.DataLoader) -> Iterator[Batch]:
    """Yield batches, turning an audio error raised inside a worker back into a one-line S3LError."""
    for b in batches:
        if isinstance(b, LoadError):
            raise S3LError(b.message)
        yield b
