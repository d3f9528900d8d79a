"""``s3l analyze-units``: the entry function and its report files.

Outputs in the report directory (each analysis writes only its own files):

``--units``   ``metrics.json`` (pnmi, phone_purity, cluster_purity, used units, segment lengths, ...),
              ``phone_given_unit.png`` (wav2vec 2.0 Fig. 3 style heat map), ``joint_counts.tsv``
              (phone × unit co-occurrence counts at the common rate: header ``phone`` + unit ids)
``--layers``  ``layers.json`` and ``layers.png`` (HuBERT Fig. 2)
``--codes``   ``codes.json``, ``code_usage.png`` and ``phone_given_code.png`` (wav2vec 2.0 Appendix D)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from s3l.analysis.align import JointCounts, RateAlignment, count_files
from s3l.analysis.inputs import AnalyzeConfig, number_of_units, require_model_inputs, resolve_unit_rate
from s3l.analysis.metrics import unit_quality
from s3l.analysis.plots import phone_display_order, plot_phone_given_unit
from s3l.console import console
from s3l.errors import S3LError
from s3l.fileio import atomic_open, atomic_write_text, check_overwrite

UNITS_OUTPUTS = ("metrics.json", "phone_given_unit.png", "joint_counts.tsv")
LAYERS_OUTPUTS = ("layers.json", "layers.png")
CODES_OUTPUTS = ("codes.json", "code_usage.png", "phone_given_code.png")


def analyze_units(cfg: AnalyzeConfig) -> dict[str, Any]:
    """Run every requested analysis, print rich tables, write the report files; returns the JSON results."""
    if cfg.units is None and not cfg.layers and not cfg.codes:
        raise S3LError("nothing to analyse: give --units KM_FILE (with --phones), --layers or --codes")
    outs: list[str] = []
    if cfg.units is not None:
        outs += UNITS_OUTPUTS
    if cfg.layers:
        outs += LAYERS_OUTPUTS
    if cfg.codes:
        outs += CODES_OUTPUTS
    check_overwrite([cfg.out / name for name in outs], cfg.force)
    results: dict[str, Any] = {}
    if cfg.units is not None:
        if cfg.phones is None:
            raise S3LError("--units needs --phones DIR/SPLIT.phn (the frame-level phone labels)")
        results["units"] = analyze_unit_file(cfg)
    if cfg.layers or cfg.codes:
        require_model_inputs(cfg)
    if cfg.layers:
        from s3l.analysis.sweep import layer_sweep

        results["layers"] = layer_sweep(cfg)
    if cfg.codes:
        from s3l.analysis.codes import analyze_codes

        results["codes"] = analyze_codes(cfg)
    return results


def analyze_unit_file(cfg: AnalyzeConfig) -> dict[str, Any]:
    assert cfg.units is not None and cfg.phones is not None
    from s3l.cluster.labels import DICT_FILE, require_complete

    info = require_complete(cfg.units.parent, [cfg.units.name, DICT_FILE])  # a killed `s3l cluster`'s: refused
    unit_rate, rate_source = resolve_unit_rate(cfg.units, cfg.unit_rate)
    rates = RateAlignment(unit_rate=unit_rate, phone_rate=cfg.phone_rate, max_diff_ms=cfg.max_diff_ms)
    k = number_of_units(cfg.units, info)
    joint = count_files(cfg.units, cfg.phones, rates, skip_mismatch=cfg.skip_mismatch, num_units=k)
    report = unit_report(joint, rates, num_units=k[0] if k else None)
    report.update(units_file=str(cfg.units), phones_file=str(cfg.phones), unit_rate_source=rate_source)
    cfg.out.mkdir(parents=True, exist_ok=True)
    title = (
        f"P(phone | unit): {cfg.units.name}, PNMI {_fmt(report['pnmi'])}, phone purity "
        f"{report['phone_purity']:.3f}, {report['used_units']} units used"
    )
    plot_phone_given_unit(joint.counts, joint.phones, joint.units, cfg.out / "phone_given_unit.png", title=title)
    write_joint_counts(cfg.out / "joint_counts.tsv", joint)
    report["heatmap"] = "phone_given_unit.png"
    atomic_write_text(cfg.out / "metrics.json", json.dumps(report, indent=2) + "\n")
    print_unit_report(report, title=f"{cfg.units} vs {cfg.phones}")
    return report


def unit_report(joint: JointCounts, rates: RateAlignment, *, num_units: int | None = None) -> dict[str, Any]:
    """The metrics.json dictionary for one count table."""
    q = unit_quality(joint.counts)
    report: dict[str, Any] = {
        "pnmi": q.pnmi,
        "phone_purity": q.phone_purity,
        "cluster_purity": q.cluster_purity,
        "used_units": q.used_units,
        "num_units": num_units,  # K from dict.km.txt (else labels.json) when present
        "used_phones": q.used_phones,
        "segment_frames": joint.unit_segment_frames,  # mean unit run length, frames at the unit rate
        "segment_ms": joint.unit_segment_frames * 1000.0 / rates.unit_rate,
        "phone_segment_ms": joint.phone_segment_frames * 1000.0 / rates.phone_rate,
        "mutual_info_bits": q.mutual_info_bits,
        "phone_entropy_bits": q.phone_entropy_bits,
        "unit_entropy_bits": q.unit_entropy_bits,
        "frames": q.frames,  # aligned frames at the common rate
        "utterances": joint.utterances,
        "skipped_mismatch": len(joint.skipped),
        "skipped_lines": joint.skipped[:100],
        "trimmed_utterances": joint.trimmed_utterances,
        "trimmed_frames": joint.trimmed_frames,
        "unit_rate": rates.unit_rate,
        "phone_rate": rates.phone_rate,
        "common_rate": rates.common_rate,
        "max_diff_frames": rates.tolerance,
    }
    return report


def print_unit_report(report: dict[str, Any], *, title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("PNMI", _fmt(report["pnmi"])),
        ("phone purity", f"{report['phone_purity']:.4f}"),
        ("cluster purity", f"{report['cluster_purity']:.4f}"),
        ("units used", f"{report['used_units']}" + (f" / {report['num_units']}" if report["num_units"] else "")),
        ("mean unit segment", f"{report['segment_frames']:.2f} frames = {report['segment_ms']:.1f} ms"),
        ("mean phone segment", f"{report['phone_segment_ms']:.1f} ms"),
        ("I(phone; unit), H(phone)", f"{report['mutual_info_bits']:.3f}, {report['phone_entropy_bits']:.3f} bits"),
        ("frames @ common rate", f"{report['frames']:,} @ {report['common_rate']} Hz"),
        ("utterances", f"{report['utterances']:,}"),
        ("skipped (length mismatch)", f"{report['skipped_mismatch']:,}"),
        ("trimmed", f"{report['trimmed_utterances']:,} utts, {report['trimmed_frames']:,} frames"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def write_joint_counts(path: Path, joint: JointCounts) -> None:
    """Phones (rows, display order) × unit ids (columns, ascending), tab separated."""
    order = phone_display_order(joint.phones, joint.counts.sum(axis=1))
    cols = sorted(range(len(joint.units)), key=lambda j: joint.units[j])
    with atomic_open(path) as f:
        f.write("phone\t" + "\t".join(str(joint.units[j]) for j in cols) + "\n")
        for i in order:
            f.write(joint.phones[i] + "\t" + "\t".join(str(int(joint.counts[i, j])) for j in cols) + "\n")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"
