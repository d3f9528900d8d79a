"""Span masking (wav2vec 2.0 §3.1 and Appendix A), with fairseq's semantics, vectorised over the batch.

``mask_prob`` follows fairseq's convention: it is the paper's span-start probability p times the span length M
(0.065 x 10 = 0.65 for wav2vec 2.0, 0.08 x 10 = 0.80 for HuBERT). For each utterance of T unpadded frames,
``int(mask_prob * T / M + U[0, 1))`` distinct start frames are drawn (at least ``min_masks``), each masks the M
frames from it, spans may overlap; then every row is cut to the batch's smallest masked count by unmasking random
frames (fairseq ``require_same_masks``), so the masked frames of a batch reshape to (B, N).

Only numpy here: the function runs on the data path and is re-exported as ``s3l.compute_mask_indices``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def compute_mask_indices(
    batch: int,
    frames: int,
    mask_prob: float,
    mask_length: int,
    min_masks: int = 2,
    lengths: Sequence[int] | np.ndarray | None = None,
    seed: int | np.random.Generator | None = None,
    *,
    require_same_masks: bool = True,
) -> np.ndarray:
    """Boolean (batch, frames) mask; True = masked. Padding (frames at or beyond ``lengths[i]``) is never masked.

    ``seed`` may be an int, a numpy Generator, or None (fresh entropy). At least one unpadded frame of every row is
    left unmasked (fairseq raises an error instead when a very short utterance would be masked entirely).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mask = np.zeros((batch, frames), dtype=bool)
    if batch == 0 or frames == 0 or mask_prob <= 0.0:
        return mask
    sz = np.full(batch, frames, dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if sz.shape != (batch,) or (sz < 0).any() or (sz > frames).any():
        raise ValueError(f"lengths must be {batch} values in [0, {frames}]")
    M = int(mask_length)

    # Number of spans per row: int(p T / M + U), floored at min_masks.
    num = np.floor(mask_prob * sz / M + rng.random(batch)).astype(np.int64)
    num = np.maximum(num, min_masks)
    # Start frames are drawn from [0, T - M); fairseq widens the range for rows too short for that.
    span_range = sz - M
    short = span_range <= num
    span_range = np.where(short, num + 1, span_range)
    span_range = np.maximum(span_range, 1)
    num = np.where(sz > 0, np.minimum(num, span_range), 0)

    # num[i] distinct starts, uniform without replacement: the first num[i] of a random permutation of range(R_i).
    width = int(span_range.max())
    keys = rng.random((batch, width))
    keys[np.arange(width)[None, :] >= span_range[:, None]] = 2.0  # outside the row's range: sorted last
    perm = np.argsort(keys, axis=1)  # (B, R)
    chosen = np.arange(width)[None, :] < num[:, None]  # (B, R)
    rows = np.broadcast_to(np.arange(batch)[:, None], perm.shape)[chosen]
    starts = perm[chosen]

    # Each start covers [start, start + M): a difference array and a cumulative sum paint all spans at once.
    diff = np.zeros((batch, frames + M + 1), dtype=np.int32)
    np.add.at(diff, (rows, starts), 1)
    np.add.at(diff, (rows, starts + M), -1)
    mask = np.cumsum(diff, axis=1)[:, :frames] > 0
    mask &= np.arange(frames)[None, :] < sz[:, None]

    # Keep at least one real frame visible, then cut every row to the batch minimum (require_same_masks).
    counts = mask.sum(axis=1)
    target = np.minimum(counts, np.maximum(sz - 1, 0))
    if require_same_masks:
        target = np.full(batch, target.min())
    if (counts > target).any():
        mask = _keep_random(mask, target, rng)
    return mask


def _keep_random(mask: np.ndarray, keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep ``keep[i]`` uniformly chosen True entries of each row of ``mask``."""
    keys = rng.random(mask.shape)
    keys[~mask] = 2.0  # unmasked frames rank after every masked one
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    return mask & (rank < keep[:, None])


def span_statistics(mask: np.ndarray) -> tuple[float, list[int]]:
    """Masked fraction and the lengths of all contiguous masked runs of a (B, T) mask (for tests and docs)."""
    padded = np.pad(mask.astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(padded, axis=1)
    starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)
    return float(mask.mean()), (ends[1] - starts[1]).tolist()
