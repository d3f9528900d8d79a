"""Unit quality from a joint count table: phone purity, cluster purity, PNMI (HuBERT §IV-D, eqs. (5)–(12)).

Notation as in the paper: ``y`` is the frame-level phone label, ``z`` the unit (cluster) label, both on the same
frames. From co-occurrence counts ``N(i, j)`` of phone ``i`` with unit ``j`` over ``T = Σ N`` frames:

    p_yz(i, j) = N(i, j) / T                    (5)  joint distribution
    p_y(i) = Σ_j p_yz(i, j)                     (6)  phone marginal
    p_z(j) = Σ_i p_yz(i, j)                     (7)  unit marginal
    z*(i) = argmax_j p_yz(i, j)                 (8)  most likely unit of phone i
    y*(j) = argmax_i p_yz(i, j)                 (9)  most likely phone of unit j
    phone purity   = E_z[p_{y|z}(y*(z) | z)] = Σ_j max_i p_yz(i, j)    (10)
    cluster purity = E_y[p_{z|y}(z*(y) | y)] = Σ_i max_j p_yz(i, j)    (11)
    PNMI = I(y; z) / H(y)
         = Σ_ij p_yz(i, j) log(p_yz(i, j) / (p_y(i) p_z(j))) / (-Σ_i p_y(i) log p_y(i))   (12)

Empty cells contribute nothing (0 log 0 = 0). Entropies are reported in bits; PNMI is a ratio and does not
depend on the base.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class UnitQuality:
    """The metrics of one (phone, unit) count table."""

    pnmi: float | None  # I(y;z)/H(y); None when H(y) = 0 (a single phone: undefined)
    phone_purity: float  # E_z[max_y p(y|z)]
    cluster_purity: float  # E_y[max_z p(z|y)]
    mutual_info_bits: float  # I(y;z)
    phone_entropy_bits: float  # H(y)
    unit_entropy_bits: float  # H(z)
    frames: int  # T: aligned frames counted
    used_units: int  # units with at least one counted frame
    used_phones: int  # phones with at least one counted frame

    def to_dict(self) -> dict:
        return asdict(self)


def unit_quality(counts: np.ndarray) -> UnitQuality:
    """Metrics of a ``(num_phones, num_units)`` table of co-occurrence counts (rows phones, columns units)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"expected a 2-D count table, got shape {counts.shape}")
    total = counts.sum()
    if total <= 0:
        raise ValueError("the count table is empty")
    p_yz = counts / total  # (P, U)
    p_y = p_yz.sum(axis=1)  # (P,)
    p_z = p_yz.sum(axis=0)  # (U,)
    h_y = _entropy_bits(p_y)
    mi = mutual_info_bits(p_yz)
    return UnitQuality(
        pnmi=mi / h_y if h_y > 0 else None,
        phone_purity=float(p_yz.max(axis=0).sum()),
        cluster_purity=float(p_yz.max(axis=1).sum()),
        mutual_info_bits=mi,
        phone_entropy_bits=h_y,
        unit_entropy_bits=_entropy_bits(p_z),
        frames=int(round(total)),
        used_units=int((p_z > 0).sum()),
        used_phones=int((p_y > 0).sum()),
    )


def mutual_info_bits(p_yz: np.ndarray) -> float:
    """I(y;z) in bits of a joint distribution ``(P, U)`` that sums to 1."""
    p_y = p_yz.sum(axis=1, keepdims=True)  # (P, 1)
    p_z = p_yz.sum(axis=0, keepdims=True)  # (1, U)
    nz = p_yz > 0
    ratio = p_yz[nz] / (p_y * p_z)[nz]
    return max(0.0, float((p_yz[nz] * np.log2(ratio)).sum()))  # clamp -1e-17 rounding on independent tables


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()) if p.size else 0.0


def conditional_phone_given_unit(counts: np.ndarray) -> np.ndarray:
    """P(phone | unit) as a ``(P, U)`` array whose columns sum to 1 (all-zero columns stay zero)."""
    counts = np.asarray(counts, dtype=np.float64)
    col = counts.sum(axis=0, keepdims=True)  # (1, U)
    return np.divide(counts, col, out=np.zeros_like(counts), where=col > 0)


def order_units_by_phone(counts: np.ndarray, phone_rank: Sequence[int]) -> np.ndarray:
    """Column order for the wav2vec 2.0 Fig. 3 heat map: used units sorted by their most likely phone.

    ``phone_rank[i]`` is the display position of phone row ``i``. Units are sorted by the position of their
    most likely phone, then by decreasing P(that phone | unit), then by unit index. Unused units are dropped.
    """
    cond = conditional_phone_given_unit(counts)
    used = np.flatnonzero(np.asarray(counts).sum(axis=0) > 0)
    display = np.argsort(np.asarray(phone_rank), kind="stable")  # display position -> phone row
    rank = cond[display][:, used].argmax(axis=0)  # (U_used,) position of the most likely phone; ties: first shown
    peak = cond[display[rank], used]
    order = np.lexsort((used, -peak, rank))  # last key is the primary key
    return used[order]


def mean_run_length(sequences: Iterable[Sequence[int] | np.ndarray]) -> float:
    """Mean length (in frames) of runs of identical consecutive labels, over all sequences.

    Runs never cross an utterance boundary: total frames / total runs. ``nan`` for no frames.
    """
    frames = runs = 0
    for seq in sequences:
        a = np.asarray(seq)
        if a.size == 0:
            continue
        frames += a.size
        runs += 1 + int(np.count_nonzero(a[1:] != a[:-1]))
    return frames / runs if runs else float("nan")
