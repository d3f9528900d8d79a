"""``--codes``: what a contrastive model's quantizer chose, against the phones (wav2vec 2.0 §2, Appendix D).

Every 50 Hz frame of the split goes through the feature encoder, its LayerNorm and the Gumbel quantizer in eval
mode (no noise: each codebook's argmax), exactly the latents the contrastive loss used as targets. Reported:

- per codebook g: codewords used out of V, and the perplexity exp(H) of its code distribution over frames
  (in [1, V]); ``code_perplexity`` is their sum over codebooks (fairseq's ``code_perplexity`` log, in [G, G V]);
- product codes (the tuple of the G choices, i.e. the discrete latent q_t): distinct tuples used out of V^G, and
  their perplexity;
- PNMI / purities of the product codes and of each codebook against the phones, and a P(phone | code) heat map of
  the ``top_codes`` most used product codes (Fig. 3).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

from s3l.analysis.align import JointCounter, RateAlignment, align_pair
from s3l.analysis.inputs import CHUNK_SECONDS, AnalyzeConfig, load_eval_split
from s3l.analysis.metrics import unit_quality
from s3l.analysis.plots import plot_code_usage, plot_phone_given_unit
from s3l.cluster.features import LayerExtractor, iter_features
from s3l.console import console
from s3l.errors import S3LError
from s3l.fileio import atomic_write_text
from s3l.progress import progress

if TYPE_CHECKING:
    import torch


class CodeExtractor(LayerExtractor):
    """The cluster module's batched extractor, returning the quantizer's code per codebook: (T, G) as floats."""

    def __init__(self, checkpoint: Path, device: str, batch_seconds: float) -> None:
        if not Path(checkpoint).exists():
            raise S3LError(f"{checkpoint}: checkpoint not found")
        super().__init__(checkpoint, 0, device, batch_seconds, CHUNK_SECONDS)
        quantizer = getattr(self.model, "quantizer", None)
        if quantizer is None or not hasattr(self.model, "backbone"):
            kind = getattr(self.model, "kind", type(self.model).__name__)
            raise S3LError(f"{checkpoint}: --codes needs a contrastive (wav2vec 2.0) pre-training checkpoint with "
                           f"a quantizer; this is a {kind} model")
        self.groups = int(quantizer.groups)  # G
        self.num_vars = int(quantizer.num_vars)  # V
        self.spec = replace(self.spec, dim=self.groups, layer=None)

    def _layer(self, batch: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            # BackboneOutput.features: the LayerNorm'ed feature encoder output the quantizer reads in forward().
            out = self.model.backbone(batch.to(self.device), lengths.to(self.device), mask=False)
            codes = self.model.quantizer(out.features).codes  # (B, T, G)
        return codes.float()


def analyze_codes(cfg: AnalyzeConfig) -> dict[str, Any]:
    assert cfg.checkpoint is not None and cfg.data is not None and cfg.split is not None
    if cfg.top_codes < 1:
        raise S3LError(f"--top-codes must be at least 1, got {cfg.top_codes}")
    manifest, phones = load_eval_split(cfg.data, cfg.split, cfg.phones)
    ex = CodeExtractor(cfg.checkpoint, cfg.device, cfg.batch_seconds)
    G, V = ex.groups, ex.num_vars
    rates = RateAlignment(unit_rate=ex.spec.label_rate, phone_rate=cfg.phone_rate,
                          max_diff_ms=cfg.max_diff_ms)
    per_book = np.zeros((G, V), dtype=np.int64)
    product = JointCounter()
    books = [JointCounter() for _ in range(G)]
    skipped: list[int] = []
    weights = V ** np.arange(G - 1, -1, -1, dtype=np.int64)  # product id = sum_g code_g * V^(G-1-g)
    with progress() as bar:
        task = bar.add_task(f"quantizer codes of {cfg.split}", total=len(manifest))
        for i, feats in iter_features(manifest, list(range(len(manifest))), ex,
                                      on_done=lambda n: bar.advance(task, n)):
            codes = feats.astype(np.int64)  # (T, G)
            ph = np.asarray(phones[i], dtype=str)
            pair = align_pair(codes @ weights, ph, rates)
            if pair is None:
                if not cfg.skip_mismatch:
                    raise S3LError(f"{manifest.source}:{manifest.line_of(i)}: {len(codes)} frames at "
                                   f"{rates.unit_rate} Hz do not match {len(ph)} phones at {rates.phone_rate} Hz")
                skipped.append(manifest.line_of(i))
                continue
            for g in range(G):
                per_book[g] += np.bincount(codes[:, g], minlength=V)
                books[g].add(*align_pair(codes[:, g], ph, rates))
            product.add(*pair)
    if product.counts.sum() == 0:
        raise S3LError(f"{manifest.source}: no frames to analyse")

    result = code_report(per_book, product, books, G, V)
    result.update(checkpoint=str(cfg.checkpoint), split=cfg.split, skipped_mismatch=len(skipped),
                  unit_rate=rates.unit_rate, phone_rate=rates.phone_rate)
    cfg.out.mkdir(parents=True, exist_ok=True)
    top = top_columns(product.counts, cfg.top_codes)
    labels = [_code_label(product.unit_index.labels()[j], G, V) for j in top]
    covered = product.counts[:, top].sum() / product.counts.sum()
    plot_phone_given_unit(
        product.counts[:, top], product.phone_index.labels(), labels, cfg.out / "phone_given_code.png",
        title=f"P(phone | code): {len(top)} most used of {result['product']['used']} codes "
              f"({covered:.0%} of frames), {cfg.checkpoint.name} on {cfg.split}",
        unit_name="code",
    )
    plot_code_usage(per_book, cfg.out / "code_usage.png", title=f"codeword usage, {cfg.checkpoint.name} on {cfg.split}",
                    perplexities=[c["perplexity"] for c in result["codebooks"]])
    result.update(heatmap="phone_given_code.png", usage_plot="code_usage.png", heatmap_codes=len(top),
                  heatmap_frame_share=float(covered))
    atomic_write_text(cfg.out / "codes.json", json.dumps(result, indent=2) + "\n")
    print_codes(result, title=f"quantizer codes of {cfg.checkpoint} on {cfg.split}")
    return result


def code_report(per_book: np.ndarray, product: JointCounter, books: list[JointCounter], G: int,
                V: int) -> dict[str, Any]:
    """Usage, perplexity and phone metrics of per-codebook counts (G, V) and the product-code table."""
    codebooks = []
    for g in range(G):
        q = unit_quality(books[g].counts)
        codebooks.append({"group": g, "used": int((per_book[g] > 0).sum()), "size": V,
                          "perplexity": perplexity(per_book[g]), "pnmi": q.pnmi, "phone_purity": q.phone_purity,
                          "cluster_purity": q.cluster_purity})
    pq = unit_quality(product.counts)
    return {
        "groups": G,
        "vars": V,
        "code_perplexity": float(sum(c["perplexity"] for c in codebooks)),
        "codebooks": codebooks,
        "product": {"used": pq.used_units, "possible": V**G, "perplexity": perplexity(product.counts.sum(axis=0)),
                    "pnmi": pq.pnmi, "phone_purity": pq.phone_purity, "cluster_purity": pq.cluster_purity},
        "frames": pq.frames,
    }


def perplexity(counts: np.ndarray) -> float:
    """exp of the entropy of the empirical distribution given by ``counts`` (1 = one code, n = n equally used)."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def top_columns(counts: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` columns with the most frames (ties: lower index first)."""
    totals = counts.sum(axis=0)
    order = np.lexsort((np.arange(len(totals)), -totals))
    return order[:n]


def _code_label(code: int, G: int, V: int) -> str:
    """Product id -> ``"c0:c1:..."`` (codebook entries)."""
    parts = []
    for _ in range(G):
        code, r = divmod(code, V)
        parts.append(r)
    return ":".join(str(p) for p in reversed(parts))


def print_codes(result: dict[str, Any], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("codes", "used", "perplexity", "PNMI", "phone purity", "cluster purity"):
        table.add_column(col, justify="right")

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    for c in result["codebooks"]:
        table.add_row(f"codebook {c['group']}", f"{c['used']}/{c['size']}", f"{c['perplexity']:.1f}", fmt(c["pnmi"]),
                      fmt(c["phone_purity"]), fmt(c["cluster_purity"]))
    p = result["product"]
    table.add_row("product (q_t)", f"{p['used']}/{p['possible']}", f"{p['perplexity']:.1f}", fmt(p["pnmi"]),
                  fmt(p["phone_purity"]), fmt(p["cluster_purity"]))
    console.print(table)
    console.print(f"code perplexity (sum over codebooks): {result['code_perplexity']:.1f} of "
                  f"{result['groups'] * result['vars']}")
