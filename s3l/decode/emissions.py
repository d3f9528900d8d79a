"""CTC emissions on disk, so LM decoding and weight tuning can re-run without the acoustic model.

``{split}.emissions.npz`` (format version 1), written by ``s3l decode --save-emissions`` into HYPDIR and read
back by ``s3l decode --emissions HYPDIR``: an uncompressed numpy archive with

``log_probs``    (sum of T_i, V) float32: every utterance's log-softmax output, concatenated in tsv order
``offsets``      (N + 1,) int64: utterance i is ``log_probs[offsets[i]:offsets[i + 1]]``
``num_samples``  (N,) int64: the tsv's sample counts (checked against the manifest on load)
``vocab``        (V,) str: the model vocabulary, ``vocab[0] == "<blank>"``
``meta``         () str: JSON with ``format_version``, ``split``, ``checkpoint``, ``forward_seconds``, ``device``,
                 ``frame_seconds`` (seconds per emission frame, from the model's conv strides; files written before it
                 was recorded are read as 20 ms when every utterance has the feature encoder's frame count)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s3l.audio import ENCODER_HOP, MIN_SAMPLES, SAMPLE_RATE
from s3l.errors import S3LError
from s3l.fileio import atomic_open
from s3l.manifest import Manifest

FORMAT_VERSION = 1


@dataclass
class Emissions:
    log_probs: list[np.ndarray]  # per utterance (T_i, V) float32, tsv order
    vocab: list[str]
    num_samples: list[int]
    meta: dict = field(default_factory=dict)  # split, checkpoint, forward_seconds, device

    def __len__(self) -> int:
        return len(self.log_probs)

    def subset(self, indices: Sequence[int]) -> Emissions:
        return Emissions([self.log_probs[i] for i in indices], self.vocab, [self.num_samples[i] for i in indices],
                         dict(self.meta))


def emissions_path(directory: str | Path, split: str) -> Path:
    return Path(directory) / f"{split}.emissions.npz"


def save_emissions(path: str | Path, em: Emissions) -> None:
    lengths = [len(x) for x in em.log_probs]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    V = len(em.vocab)
    stacked = np.concatenate(em.log_probs).astype(np.float32) if em.log_probs else np.zeros((0, V), np.float32)
    meta = {"format_version": FORMAT_VERSION, **em.meta}
    with atomic_open(path, "wb") as f:
        np.savez(f, log_probs=stacked, offsets=offsets, num_samples=np.asarray(em.num_samples, dtype=np.int64),
                 vocab=np.asarray(em.vocab, dtype=str), meta=np.asarray(json.dumps(meta)))


def load_emissions(path: str | Path, manifest: Manifest | None = None) -> Emissions:
    """Read an emissions file; with ``manifest``, check it lists the same utterances (count and sizes)."""
    path = Path(path)
    if not path.is_file():
        raise S3LError(f"{path}: emissions not found (write them with `s3l decode --save-emissions`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            stacked, offsets = z["log_probs"], z["offsets"]
            sizes, vocab = z["num_samples"].tolist(), [str(v) for v in z["vocab"]]
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError) as e:
        raise S3LError(f"{path}: not an s3l emissions file ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise S3LError(f"{path}: emissions format version {meta.get('format_version')} is not supported")
    if stacked.ndim != 2 or stacked.shape[1] != len(vocab) or len(offsets) != len(sizes) + 1 \
            or offsets[-1] != len(stacked):
        raise S3LError(f"{path}: inconsistent emissions file (shapes do not match)")
    if manifest is not None:
        if len(sizes) != len(manifest):
            raise S3LError(f"{path}: {len(sizes)} utterances but {manifest.source} lists {len(manifest)}; "
                           "the emissions were made for another split")
        for i, (a, b) in enumerate(zip(sizes, manifest.sizes)):
            if a != b:
                raise S3LError(f"{path}: utterance {i + 1} has {a} samples but {manifest.source}:"
                               f"{manifest.line_of(i)} says {b}; the emissions were made for another split")
    log_probs = [stacked[offsets[i] : offsets[i + 1]] for i in range(len(sizes))]
    return Emissions(log_probs=log_probs, vocab=vocab, num_samples=sizes, meta=meta)


def frame_seconds(em: Emissions, source: str | Path) -> float:
    """Seconds per frame of ``em``: its ``frame_seconds`` metadata, else the wav2vec 2.0 / HuBERT feature
    encoder's 20 ms if every utterance has that encoder's frame count for its length."""
    if "frame_seconds" in em.meta:
        return float(em.meta["frame_seconds"])
    standard = [0 if n < MIN_SAMPLES else 1 + (n - MIN_SAMPLES) // ENCODER_HOP for n in em.num_samples]
    if [len(x) for x in em.log_probs] == standard:
        return ENCODER_HOP / SAMPLE_RATE
    raise S3LError(f"{source}: the emissions do not record their frame length and their frame counts are not "
                   "the 20 ms feature encoder's; word timings need it (save the emissions again)")
