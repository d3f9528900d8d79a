"""Span masking: wav2vec 2.0 Appendix A statistics and fairseq's compute_mask_indices semantics."""

import numpy as np
import pytest

import s3l
from s3l.models.masking import compute_mask_indices, span_statistics


def test_appendix_a_statistics_for_15_second_utterances():
    # wav2vec 2.0 Appendix A: p = 0.065, M = 10 on 15 s (750 frames) masks ~49 % of the frames with a mean span of
    # 14.7 frames (~300 ms) and a median of 10 frames.
    rng = np.random.default_rng(0)
    masks = np.concatenate([s3l.compute_mask_indices(1, 750, 0.65, 10, seed=rng) for _ in range(600)])
    frac, spans = span_statistics(masks)
    assert 0.48 < frac < 0.50
    assert 14.3 < np.mean(spans) < 15.1
    assert np.median(spans) == 10


def test_number_of_spans_follows_fairseq_formula():
    # A row of T frames gets int(p T / M + U[0, 1)) distinct starts. With M = 1 every start is one masked frame,
    # so the masked count is that number: 370 or 371 for p T / M = 370.5, with mean 370.5.
    m = compute_mask_indices(4000, 1000, 0.3705, 1, min_masks=0, seed=1, require_same_masks=False)
    counts = m.sum(1)
    assert set(np.unique(counts)) == {370, 371}
    assert abs(counts.mean() - 370.5) < 0.05


def test_min_masks():
    m = compute_mask_indices(200, 100, 0.001, 10, min_masks=2, seed=0, require_same_masks=False)
    counts = m.sum(1)
    assert counts.min() >= 10 and counts.max() <= 20  # two spans of 10, possibly overlapping
    _, spans = span_statistics(m)
    assert sum(1 for s in spans if s >= 10) >= 200  # every row has at least one full span
    assert not compute_mask_indices(3, 100, 0.0, 10).any()


def test_require_same_masks_and_lengths():
    lengths = np.array([300, 250, 120, 60])
    m = compute_mask_indices(4, 300, 0.65, 10, lengths=lengths, seed=3)
    counts = m.sum(1)
    assert (counts == counts[0]).all() and counts[0] > 0
    for i, n in enumerate(lengths):
        assert not m[i, n:].any()  # never in the padding
    free = compute_mask_indices(4, 300, 0.65, 10, lengths=lengths, seed=3, require_same_masks=False)
    assert len(set(free.sum(1))) > 1
    # cutting to the minimum only unmasks frames: the kept mask is a subset of the unconstrained one
    assert not (m & ~free).any()


def test_seed_reproducible_and_short_rows_keep_a_visible_frame():
    a = compute_mask_indices(8, 200, 0.65, 10, seed=42)
    assert (a == compute_mask_indices(8, 200, 0.65, 10, seed=42)).all()
    assert not (a == compute_mask_indices(8, 200, 0.65, 10, seed=43)).all()
    m = compute_mask_indices(5, 12, 0.8, 10, lengths=[1, 2, 5, 10, 12], seed=0, require_same_masks=False)
    for i, n in enumerate([1, 2, 5, 10, 12]):
        assert m[i, :n].sum() <= n - 1 and not m[i, n:].any()


def test_bad_lengths():
    with pytest.raises(ValueError):
        compute_mask_indices(2, 10, 0.5, 2, lengths=[11, 3])
