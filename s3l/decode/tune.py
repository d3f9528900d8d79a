"""Search for the LM weight and word score that minimise dev WER.

wav2vec 2.0 / HuBERT tuned both with Bayesian optimisation over 128 trials (LM weight in [0, 5], word insertion
score in [-5, 5]). Dev WER is piecewise constant in the two weights with broad plateaus, so a deterministic
search does as well at a fraction of the cost: a coarse grid over the whole box (about half the trials), then a
pattern search around the best point (its 8 neighbours at half the grid spacing; move on improvement, halve
the step otherwise) until the trial budget is spent or the step is negligible. Every trial decodes the same
stored dev emissions, so the acoustic model runs once. Any decoder with an LM tunes the same way
(:func:`tune_decoder` only calls its ``set_weights`` and ``decode``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from s3l.decode.decoder import Decoder

LM_WEIGHT_RANGE = (0.0, 5.0)
WORD_SCORE_RANGE = (-5.0, 5.0)
MIN_STEP = 1e-3  # stop refining below this step (in weight units)


@dataclass(frozen=True)
class Trial:
    lm_weight: float
    word_score: float
    errors: int  # word substitutions + deletions + insertions over the tuning split
    ref_words: int
    stage: str  # "grid" or "refine"

    @property
    def wer(self) -> float:
        return 100.0 * self.errors / max(self.ref_words, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "wer": self.wer}


Evaluate = Callable[[float, float], tuple[int, int]]  # (lm_weight, word_score) -> (errors, ref_words)


def search(evaluate: Evaluate, trials: int, lm_range: tuple[float, float] = LM_WEIGHT_RANGE,
           ws_range: tuple[float, float] = WORD_SCORE_RANGE,
           on_trial: Callable[[Trial], None] | None = None) -> list[Trial]:
    """Run at most ``trials`` evaluations; returns them in order (see :func:`best`)."""
    if trials < 1:
        raise ValueError("trials must be at least 1")
    done: dict[tuple[float, float], Trial] = {}
    order: list[Trial] = []

    def run(a: float, b: float, stage: str) -> Trial | None:
        a = round(min(max(a, lm_range[0]), lm_range[1]), 6)
        b = round(min(max(b, ws_range[0]), ws_range[1]), 6)
        if (a, b) in done:
            return done[(a, b)]
        if len(order) >= trials:
            return None
        errors, words = evaluate(a, b)
        t = Trial(lm_weight=a, word_score=b, errors=int(errors), ref_words=int(words), stage=stage)
        done[(a, b)] = t
        order.append(t)
        if on_trial is not None:
            on_trial(t)
        return t

    k = max(2, math.isqrt(max(trials // 2, 1)))
    lm_grid = _linspace(*lm_range, k)
    ws_grid = _linspace(*ws_range, k)
    for a, b in itertools.product(lm_grid, ws_grid):
        run(a, b, "grid")
    center = best(order)
    step_a = (lm_range[1] - lm_range[0]) / (k - 1) / 2
    step_b = (ws_range[1] - ws_range[0]) / (k - 1) / 2
    while len(order) < trials and max(step_a, step_b) >= MIN_STEP:
        base = center
        for da, db in itertools.product((-1, 0, 1), repeat=2):
            if da == db == 0:
                continue
            t = run(base.lm_weight + da * step_a, base.word_score + db * step_b, "refine")
            if t is None:
                break
            if t.errors < center.errors:
                center = t
        if center is base:
            step_a, step_b = step_a / 2, step_b / 2
    return order


def tune_decoder(decoder: Decoder, emissions: Sequence[np.ndarray], refs: Sequence[str], trials: int,
                 lm_range: tuple[float, float] = LM_WEIGHT_RANGE, ws_range: tuple[float, float] = WORD_SCORE_RANGE,
                 total: Callable[[int, int], tuple[int, int]] | None = None,
                 on_trial: Callable[[Trial], None] | None = None) -> list[Trial]:
    """:func:`search` over ``decoder``'s LM weight and word score, scoring its hypotheses for ``emissions`` against
    ``refs`` (one transcript each). ``total`` turns this process's (errors, words) into the sum over all processes
    (each holds a shard). The decoder is left with the last trial's weights."""
    from s3l.score import score

    def evaluate(lm_weight: float, word_score: float) -> tuple[int, int]:
        decoder.set_weights(lm_weight, word_score)
        hyps = [decoder.decode(x).text for x in emissions]
        errors, words = 0, 0
        if refs:
            r = score(list(refs), hyps, top=0)
            errors, words = r.substitutions + r.deletions + r.insertions, r.ref_words
        return total(errors, words) if total is not None else (errors, words)

    return search(evaluate, trials, lm_range, ws_range, on_trial)


def best(trials: list[Trial]) -> Trial:
    """Lowest WER. Among ties (WER plateaus are common on small dev sets) the trial nearest the tied trials'
    centroid, i.e. the middle of the plateau rather than its edge; then the earliest."""
    low = min(t.wer for t in trials)
    tied = [(i, t) for i, t in enumerate(trials) if t.wer == low]
    ca = sum(t.lm_weight for _, t in tied) / len(tied)
    cb = sum(t.word_score for _, t in tied) / len(tied)
    span_a = max(max(t.lm_weight for t in trials) - min(t.lm_weight for t in trials), 1e-9)
    span_b = max(max(t.word_score for t in trials) - min(t.word_score for t in trials), 1e-9)
    return min(tied, key=lambda it: (((it[1].lm_weight - ca) / span_a) ** 2 + ((it[1].word_score - cb) / span_b) ** 2,
                                     it[0]))[1]


def _linspace(lo: float, hi: float, k: int) -> list[float]:
    return [lo + (hi - lo) * i / (k - 1) for i in range(k)]
