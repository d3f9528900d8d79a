"""``s3l export``: a model in the Hugging Face layout (transformers) or as an s3l checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.paths import writing_to


def export(
    model: Path = typer.Argument(..., help="Model to convert: an s3l checkpoint (.safetensors), a fairseq checkpoint "
                                 "(.pt; its dict.ltr.txt beside it for CTC) or a Hugging Face directory."),
    out: Path = typer.Argument(..., help="Output: a directory for --to hf, a .safetensors file for --to s3l."),
    to: str = typer.Option("hf", "--to", help="hf: transformers directory (config.json, model.safetensors, "
                           "preprocessor_config.json; vocab.json for CTC models), loadable with "
                           "Wav2Vec2ForPreTraining / HubertModel / *ForCTC. s3l: an s3l checkpoint."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Convert a model to the Hugging Face layout or to an s3l checkpoint (weights and outputs unchanged)."""
    from s3l.convert.export import ExportConfig, run_export

    with writing_to(dirs={"OUT": out} if to == "hf" else {}, files={"OUT": out} if to == "s3l" else {}):
        run_export(ExportConfig(model=model, out=out, to=to, force=force))
