"""``s3l score``: WER and CER of a hypothesis file against a reference file."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.paths import writing_to


def score(
    ref: Path = typer.Option(..., "--ref", help="Reference transcripts, one per line (e.g. HYPDIR/test.ref, a .wrd)."),
    hyp: Path = typer.Option(..., "--hyp", help="Hypotheses, one per line in the same order (e.g. HYPDIR/test.hyp)."),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write the report here: wer, cer (percent), substitutions, deletions, insertions, "
        "ref_words, per-utterance errors and the most frequent errors."
    ),
    top: int = typer.Option(10, "--top", min=0, help="Number of most frequent substitutions/deletions/insertions "
                            "to list."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --json report."),
) -> None:
    """Word and character error rates with substitutions, deletions, insertions and the most frequent errors."""
    from s3l.score import ScoreConfig, run_score

    with writing_to(files={"--json": json_out}):
        run_score(ScoreConfig(ref=ref, hyp=hyp, json_out=json_out, top=top, force=force))
