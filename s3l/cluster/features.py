"""Frame features for k-means: HuBERT-recipe MFCCs (100 Hz) and transformer layers (50 Hz).

MFCCs follow fairseq ``examples/hubert/simple_kmeans/dump_mfcc_feature.py``: Kaldi-compatible 13 cepstra
(``torchaudio.compliance.kaldi.mfcc``, ``use_energy=False``, no dither, 25 ms window, 10 ms shift, snip_edges)
on the float waveform in [-1, 1] (fairseq reads audio normalised, not as 16-bit integers), then Δ and ΔΔ
(``torchaudio.functional.compute_deltas``, window 5, along time) stacked as [static | Δ | ΔΔ] per frame.
Layer features are ``hidden_states()[layer]`` of any checkpoint ``s3l.load_model`` reads (layer 0 = transformer
input, N = output of block N, as fairseq's ``output_layer``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from s3l.audio import ENCODER_HOP, MIN_SAMPLES, PHONE_HOP, SAMPLE_RATE
from s3l.checkpoint import file_hash
from s3l.cluster.threads import bounded_map, cpu_workers
from s3l.errors import S3LError
from s3l.manifest import Manifest

if TYPE_CHECKING:
    import torch

MFCC_DIM = 39
MFCC_RATE = SAMPLE_RATE // PHONE_HOP  # 100 Hz
LAYER_RATE = SAMPLE_RATE // ENCODER_HOP  # 50 Hz
# Product k-means subspaces of the MFCC vector (HuBERT §II-C, Table VI: static / Δ / ΔΔ).
MFCC_SUBSPACES = {"static": (0, 13), "delta": (13, 26), "ddelta": (26, 39)}
FEATURES = ("mfcc", "layer")
# Utterances are length-sorted within windows of this many before batching (bounds the reordering buffer).
SORT_WINDOW = 64


def mfcc_frames(num_samples: int) -> int:
    """Kaldi frames with snip_edges: one per 10 ms hop whose 25 ms window fits, ``1 + (n - 400) // 160``."""
    return 0 if num_samples < MIN_SAMPLES else 1 + (num_samples - MIN_SAMPLES) // PHONE_HOP


def layer_frames(num_samples: int) -> int:
    """50 Hz frames of the conv feature encoder (receptive field 400, hop 320: ``1 + (n - 400) // 320``)."""
    from s3l.models import encoder_frames

    return encoder_frames(num_samples)


def mfcc(wave: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HuBERT iteration-1 features of a 16 kHz float waveform (S,) -> (T, 39), T = ``mfcc_frames(S)``."""
    import torch
    import torchaudio

    x = torch.as_tensor(wave, dtype=torch.float32).view(1, -1)  # (1, S)
    with torch.no_grad():
        static = torchaudio.compliance.kaldi.mfcc(x, sample_frequency=SAMPLE_RATE, use_energy=False)  # (T, 13)
        static = static.t()  # (13, T): compute_deltas works along the last axis
        delta = torchaudio.functional.compute_deltas(static)  # (13, T)
        ddelta = torchaudio.functional.compute_deltas(delta)  # (13, T)
        return torch.cat([static, delta, ddelta], dim=0).t().contiguous()  # (T, 39)


def checkpoint_hash(path: str | Path) -> str:
    """:func:`s3l.checkpoint.file_hash` of a checkpoint file, or of a directory's files (Hugging Face dirs)."""
    path = Path(path)
    if path.is_file():
        return file_hash(path)
    if not path.is_dir():
        raise S3LError(f"{path}: checkpoint not found")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{file_hash(f)}\n".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class FeatureSpec:
    """What a k-means model was fit on; stored in its metadata and checked when the model is applied."""

    feature: str  # "mfcc" or "layer"
    dim: int  # feature dimension
    label_rate: int  # frames per second: 100 (mfcc) or 50 (layer)
    layer: int | None = None  # transformer layer (layer features only)
    checkpoint: str | None = None  # path of the checkpoint, informational
    checkpoint_hash: str | None = None  # what identifies the checkpoint

    def frames(self, num_samples: int) -> int:
        return mfcc_frames(num_samples) if self.feature == "mfcc" else layer_frames(num_samples)


class MfccExtractor:
    """Utterances in parallel on single-threaded worker threads (see :mod:`s3l.cluster.threads`): ``kaldi.mfcc``
    takes one waveform at a time and its tensors are too small for torch's intra-op threads."""

    def __init__(self, workers: int | None = None) -> None:
        self.spec = FeatureSpec(feature="mfcc", dim=MFCC_DIM, label_rate=MFCC_RATE)
        self.workers = workers or cpu_workers()

    def plan(self, indices: Sequence[int], sizes: Sequence[int]) -> list[list[int]]:
        step = 4 * self.workers
        return [list(indices[i:i + step]) for i in range(0, len(indices), step)]

    def extract(self, manifest: Manifest, batch: Sequence[int]) -> list[torch.Tensor]:
        return list(bounded_map(lambda i: mfcc(manifest.load(i)), batch, self.workers))

    def __call__(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        return list(bounded_map(mfcc, waves, self.workers))


class LayerExtractor:
    """``hidden_states()[layer]`` of a checkpoint, batched by padded length; long audio in aligned chunks.

    A chunk of ``320 m + 80`` samples starting at sample ``320 f`` yields exactly encoder frames ``f .. f+m-1``,
    so chunked utterances get the same number of frames as whole ones (the transformer context is the chunk).
    """

    def __init__(self, checkpoint: str | Path, layer: int, device: str, batch_seconds: float,
                 chunk_seconds: float) -> None:
        import torch

        from s3l.models import load_model

        self.model = load_model(checkpoint).to(device).eval()
        self.device = device
        self.workers = cpu_workers() if device == "cpu" else 1  # see s3l.cluster.threads
        self.layer = layer
        self.batch_samples = max(int(batch_seconds * SAMPLE_RATE), MIN_SAMPLES)
        chunk_frames = max(int(chunk_seconds * SAMPLE_RATE) - (MIN_SAMPLES - ENCODER_HOP), ENCODER_HOP) // ENCODER_HOP
        self.chunk_frames = chunk_frames
        self.chunk_samples = chunk_frames * ENCODER_HOP + (MIN_SAMPLES - ENCODER_HOP)
        with torch.no_grad():
            probe = torch.zeros(1, SAMPLE_RATE, device=device)
            states = self.model.hidden_states(probe, torch.tensor([SAMPLE_RATE], device=device))
        n_layers = len(states) - 1
        if not 0 <= layer <= n_layers:
            raise S3LError(f"{checkpoint}: --layer {layer} out of range; the checkpoint has layers 0..{n_layers} "
                           "(0 = transformer input, N = output of block N)")
        self.spec = FeatureSpec(feature="layer", dim=int(states[layer].shape[-1]), label_rate=LAYER_RATE,
                                layer=layer, checkpoint=str(checkpoint), checkpoint_hash=checkpoint_hash(checkpoint))

    def plan(self, indices: Sequence[int], sizes: Sequence[int]) -> list[list[int]]:
        """Length-sorted batches with ``B * max_len <= batch_samples`` (padding stays small)."""
        batches: list[list[int]] = []
        cur: list[int] = []
        for i in sorted(indices, key=lambda i: sizes[i]):
            if cur and (len(cur) + 1) * sizes[i] > self.batch_samples:
                batches.append(cur)
                cur = []
            cur.append(i)
        if cur:
            batches.append(cur)
        return batches

    def extract(self, manifest: Manifest, batch: Sequence[int]) -> list[torch.Tensor]:
        return self([manifest.load(i) for i in batch])

    def __call__(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        if len(waves) == 1 and len(waves[0]) > self.chunk_samples:
            return [self._chunked(waves[0])]
        if self.workers == 1 or len(waves) == 1:
            return self._batch(waves)
        # On CPU: the batch in `workers` contiguous slices, each on a single-threaded worker thread.
        cuts = np.linspace(0, len(waves), min(self.workers, len(waves)) + 1).astype(int)
        groups = [waves[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
        return [f for part in bounded_map(self._batch, groups, self.workers) for f in part]

    def _batch(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        import torch

        lengths = torch.tensor([len(w) for w in waves])
        batch = torch.zeros(len(waves), int(lengths.max()))  # (B, S)
        for b, w in enumerate(waves):
            batch[b, : len(w)] = torch.from_numpy(w)
        feats = self._layer(batch, lengths)  # (B, T, D)
        out = []
        for b, n in enumerate(lengths.tolist()):
            t = layer_frames(n)
            if feats.shape[1] < t:
                raise RuntimeError(f"model returned {feats.shape[1]} frames for {n} samples, expected {t}")
            out.append(feats[b, :t].float().cpu())
        return out

    def _chunked(self, wave: np.ndarray) -> torch.Tensor:
        import torch

        def one(f0: int) -> torch.Tensor:
            piece = torch.from_numpy(wave[f0 * ENCODER_HOP: f0 * ENCODER_HOP + self.chunk_samples]).view(1, -1)
            feats = self._layer(piece, torch.tensor([piece.shape[1]]))  # (1, T, D)
            return feats[0, : layer_frames(piece.shape[1])].float().cpu()

        starts = range(0, layer_frames(len(wave)), self.chunk_frames)
        return torch.cat(list(bounded_map(one, starts, self.workers)))  # (total, D)

    def _layer(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            states = self.model.hidden_states(batch.to(self.device), lengths.to(self.device))
        return states[self.layer]  # (B, T, D)


Extractor = MfccExtractor | LayerExtractor


class FeatureCache(Protocol):
    """Features of some utterances already on disk (see :class:`s3l.cluster.store.FeatureStore`)."""

    def __contains__(self, utt: object) -> bool: ...

    def __getitem__(self, utt: int) -> np.ndarray: ...


def make_extractor(feature: str, checkpoint: str | Path | None, layer: int | None, device: str,
                   batch_seconds: float = 20.0, chunk_seconds: float = 100.0) -> Extractor:
    if feature == "mfcc":
        return MfccExtractor()
    if feature != "layer":
        raise S3LError(f"unknown --feature {feature!r} (use {' or '.join(FEATURES)})")
    if checkpoint is None or layer is None:
        raise S3LError("--feature layer needs --checkpoint CKPT and --layer N")
    if not Path(checkpoint).exists():
        raise S3LError(f"{checkpoint}: checkpoint not found")
    return LayerExtractor(checkpoint, layer, device, batch_seconds, chunk_seconds)


def iter_features(manifest: Manifest, indices: Sequence[int], extractor: Extractor, *,
                  cached: FeatureCache | None = None,
                  on_done: Callable[[int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(utterance index, (T, D) float32)`` for ``indices``, permuted only within windows of SORT_WINDOW.

    Utterances in ``cached`` (features already on disk) are read instead of recomputed; ``on_done(n)`` is
    called with the number of utterances finished (progress bars).
    """
    for w in range(0, len(indices), SORT_WINDOW):
        window = indices[w:w + SORT_WINDOW]
        todo = []
        for i in window:
            if cached is not None and i in cached:
                yield i, cached[i]
                if on_done:
                    on_done(1)
            else:
                todo.append(i)
        for batch in extractor.plan(todo, manifest.sizes):
            # Manifest.load averages multi-channel audio: accepting it was decided at prep time.
            for i, feat in zip(batch, extractor.extract(manifest, batch)):
                want = extractor.spec.frames(manifest.sizes[i])
                if tuple(feat.shape) != (want, extractor.spec.dim):
                    raise RuntimeError(f"{manifest.audio_path(i)}: features {tuple(feat.shape)}, "
                                       f"expected ({want}, {extractor.spec.dim})")
                yield i, feat.numpy()
            if on_done:
                on_done(len(batch))
