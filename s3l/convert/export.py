"""``s3l export``: convert any model ``s3l.load_model`` reads to the Hugging Face layout or to an s3l checkpoint.

``--to hf`` writes a transformers directory (:func:`s3l.convert.hf_export.export_hf`); ``--to s3l`` writes an s3l
checkpoint (``.safetensors`` with the model config in its metadata and ``source`` = the input path), e.g. to turn a
fairseq ``.pt`` into a file every s3l command reads without the restricted unpickler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from s3l.errors import S3LError
from s3l.fileio import check_overwrite

TARGETS = ("hf", "s3l")


@dataclass(frozen=True)
class ExportConfig:
    model: Path  # s3l checkpoint, fairseq .pt or Hugging Face directory
    out: Path  # a directory (--to hf) or a .safetensors file (--to s3l)
    to: str = "hf"
    force: bool = False  # overwrite existing output files


def run_export(cfg: ExportConfig) -> list[Path]:
    """Load ``cfg.model``, write it in the ``cfg.to`` layout, print a summary; returns the files written."""
    from s3l.convert.hf_export import export_hf, hf_files
    from s3l.models.io import load_model, save_model

    if cfg.to not in TARGETS:
        raise S3LError(f"unknown export target {cfg.to!r}; choose one of {', '.join(TARGETS)}")
    if cfg.to == "hf" and cfg.out.exists() and not cfg.out.is_dir():
        raise S3LError(f"{cfg.out}: exists and is not a directory (--to hf writes a directory)")
    if cfg.to == "s3l" and cfg.out.suffix != ".safetensors":
        raise S3LError(f"{cfg.out}: an s3l checkpoint is a .safetensors file")
    if cfg.to == "s3l":
        check_overwrite([cfg.out], cfg.force)
    model = load_model(cfg.model)
    if cfg.to == "hf":
        check_overwrite(hf_files(cfg.out, model), cfg.force)
        files = export_hf(model, cfg.out, force=True)
    else:
        save_model(cfg.out, model, source=str(cfg.model))
        files = [cfg.out]
    _print_summary(cfg, model, files)
    return files


def _print_summary(cfg: ExportConfig, model, files: list[Path]) -> None:
    from rich.table import Table

    from s3l.console import console

    c = model.config
    t = Table(title=f"{cfg.model} -> {cfg.to}", show_header=False)
    t.add_row("model", f"{model.kind} ({c.objective}), {c.encoder_layers} blocks, dim {c.encoder_embed_dim}, "
              f"{'pre' if c.layer_norm_first else 'post'}-LN, {c.extractor_mode} feature encoder")
    t.add_row("parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M")
    if model.kind == "ctc":
        t.add_row("vocabulary", f"{len(model.vocab)} symbols")
    t.add_row("wrote", ", ".join(f.name for f in files) + (f" in {cfg.out}" if cfg.to == "hf" else ""))
    console.print(t)
