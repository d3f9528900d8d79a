"""The papers' unit plots, drawn with matplotlib's Agg backend (no display needed).

- :func:`plot_phone_given_unit`: P(phone | unit) heat map, units ordered by their most likely phone
  (wav2vec 2.0 Fig. 3); phones in phonetic-class order (:func:`phone_display_order`).
- :func:`plot_layer_sweep`: phone purity, cluster purity and PNMI against the layer, one line per K
  (HuBERT Fig. 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s3l.analysis.metrics import conditional_phone_given_unit, order_units_by_phone
from s3l.fileio import atomic_open

# Phonetic classes in display order: silence, vowels (front to back, then diphthongs and r-coloured),
# glides and liquids, nasals, stops, affricates, fricatives. ARPAbet (TIMIT 61 → 39 folding, CMUdict) and the
# common IPA symbols; matching ignores case and stress digits. Phones not listed follow, most frequent first.
_CLASSES: list[tuple[str, tuple[str, ...]]] = [
    ("silence", ("sil", "sp", "spn", "h#", "pau", "epi", "#h", "<sil>", "sil0", "_")),
    ("vowel", ("iy", "ih", "ix", "eh", "ey", "ae", "aa", "ah", "ax", "ax-h", "ao", "uh", "uw", "ux", "ow",
               "ay", "aw", "oy", "er", "axr",
               "i", "iː", "ɪ", "e", "eɪ", "ɛ", "æ", "a", "ɑ", "ɑː", "ɒ", "ʌ", "ə", "ɔ", "ɔː", "ʊ", "u", "uː",
               "o", "oʊ", "əʊ", "aɪ", "aʊ", "ɔɪ", "ɝ", "ɚ", "ɜː", "ɜ")),
    ("glide", ("l", "el", "r", "w", "y", "hh", "hv", "ɹ", "j", "h", "ɫ", "ɾ")),
    ("nasal", ("m", "em", "n", "en", "nx", "ng", "eng", "ŋ")),
    ("stop", ("b", "bcl", "d", "dcl", "g", "gcl", "p", "pcl", "t", "tcl", "k", "kcl", "dx", "q", "ʔ")),
    ("affricate", ("jh", "ch", "dʒ", "tʃ")),
    ("fricative", ("s", "sh", "z", "zh", "f", "th", "v", "dh", "ʃ", "ʒ", "θ", "ð")),
]
_POSITION = {sym: i for i, sym in enumerate(s for _, group in _CLASSES for s in group)}


def _key(symbol: str) -> str:
    return symbol.lower().rstrip("012")


def phone_display_order(phones: Sequence[str], counts: Sequence[float]) -> list[int]:
    """Indices of ``phones`` in display order: known phones by phonetic class, then the rest by frequency."""
    known = [i for i, p in enumerate(phones) if _key(p) in _POSITION]
    rest = [i for i, p in enumerate(phones) if _key(p) not in _POSITION]
    known.sort(key=lambda i: (_POSITION[_key(phones[i])], phones[i]))
    rest.sort(key=lambda i: (-counts[i], phones[i]))
    return known + rest


def plot_phone_given_unit(
    counts: np.ndarray,
    phones: Sequence[str],
    units: Sequence[object],
    path: str | Path,
    *,
    title: str = "",
    unit_name: str = "unit",
) -> list[object]:
    """Heat map of P(phone | unit) from a ``(P, U)`` count table; returns the unit labels in plotted order.

    Rows are phones (top to bottom in :func:`phone_display_order`), columns the used units sorted by their most
    likely phone, so a unit that specialises in one phone puts its mass on a descending staircase.
    """
    plt = _pyplot()
    counts = np.asarray(counts)
    row_order = phone_display_order(phones, counts.sum(axis=1))
    rank = np.empty(len(phones), dtype=np.int64)
    rank[row_order] = np.arange(len(phones))
    col_order = order_units_by_phone(counts, rank)
    cond = conditional_phone_given_unit(counts)[np.ix_(row_order, col_order)]  # (P, U_used)
    n_phones, n_units = cond.shape

    width = float(np.clip(2.5 + 0.12 * n_units, 7.0, 24.0))
    height = float(np.clip(1.5 + 0.22 * n_phones, 4.0, 16.0))
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    im = ax.imshow(cond, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_yticks(range(n_phones))
    ax.set_yticklabels([phones[i] for i in row_order], fontsize=8 if n_phones <= 50 else 6)
    shown = [units[i] for i in col_order]
    if n_units <= 80:
        ax.set_xticks(range(n_units))
        ax.set_xticklabels([str(u) for u in shown], rotation=90, fontsize=6)
        ax.set_xlabel(f"{unit_name} (ordered by most likely phone)")
    else:
        # Too many columns to label: mark where each phone's group of units starts instead.
        best = cond.argmax(axis=0)
        starts = [0] + [j for j in range(1, n_units) if best[j] != best[j - 1]]
        ax.set_xticks(starts)
        ax.set_xticklabels([phones[row_order[best[j]]] for j in starts], rotation=90, fontsize=6)
        ax.set_xlabel(f"{n_units} {unit_name}s, grouped by most likely phone (tick = first {unit_name} of a group)")
    ax.set_ylabel("phone")
    ax.set_title(title or f"P(phone | {unit_name})", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label=f"P(phone | {unit_name})")
    fig.tight_layout()
    _save(fig, path)
    return shown


def plot_layer_sweep(rows: Sequence[dict], path: str | Path, *, title: str = "") -> None:
    """Three panels (phone purity, cluster purity, PNMI) against the layer, one line per K.

    ``rows``: dicts with keys ``layer``, ``k``, ``phone_purity``, ``cluster_purity``, ``pnmi``.
    """
    plt = _pyplot()
    ks = sorted({r["k"] for r in rows})
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=110)
    for ax, key, name in zip(
        axes, ("phone_purity", "cluster_purity", "pnmi"), ("phone purity", "cluster purity", "PNMI")
    ):
        for k in ks:
            pts = sorted((r["layer"], r[key]) for r in rows if r["k"] == k and r[key] is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"K={k}")
        ax.set_xlabel("layer (0 = transformer input)")
        ax.set_title(name)
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_code_usage(counts: np.ndarray, path: str | Path, *, title: str = "",
                    perplexities: Sequence[float] | None = None) -> None:
    """Bar chart per codebook of how often each codeword is chosen, sorted by frequency. ``counts``: (G, V)."""
    plt = _pyplot()
    groups = counts.shape[0]
    fig, axes = plt.subplots(groups, 1, figsize=(9, 2.2 * groups), dpi=110, squeeze=False)
    for g in range(groups):
        c = np.sort(counts[g])[::-1]
        ax = axes[g, 0]
        ax.bar(np.arange(len(c)), c / max(c.sum(), 1), width=1.0)
        ax.set_ylabel("frequency")
        ppl = f", perplexity {perplexities[g]:.1f}" if perplexities is not None else ""
        ax.set_title(f"codebook {g}: {int((c > 0).sum())}/{len(c)} codewords used{ppl}", fontsize=9)
    axes[-1, 0].set_xlabel("codeword (sorted by frequency)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)
