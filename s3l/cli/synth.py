"""``s3l prep synth``: the built-in synthetic speech corpus (needs the ``synth`` extra)."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import POSITIVE
from s3l.paths import writing_to


def synth(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for audio, manifests and lm.txt."),
    hours: float = typer.Option(..., "--hours", callback=POSITIVE, help="Hours of unlabeled audio in the train split."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed; the same seed gives byte-identical audio and manifests."),
    labeled_scale: float = typer.Option(1.0, "--labeled-scale", callback=POSITIVE, help="Scale of the labeled "
                                        "fine-tuning splits: train-1h holds 60 min and train-10min 10 min times this."),
    dev_minutes: float = typer.Option(10.0, "--dev-minutes", callback=POSITIVE, help="Minutes of audio in dev."),
    test_minutes: float = typer.Option(10.0, "--test-minutes", callback=POSITIVE, help="Minutes of audio in test."),
    lm_sentences: int = typer.Option(50_000, "--lm-sentences", min=1, help="Sentences in lm.txt (grammar text that "
                                     "shares no sentence with dev or test)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Synthesis processes; the output does not depend on it."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing corpus in --out."),
) -> None:
    """Synthesise speech with espeak-ng: many accents and voices, exact phone alignments, an LM text.

    Writes train (unlabeled), train-1h, train-10min (its start), dev, test (labeled), lm.txt, synth.json.
    """
    from s3l.synth.corpus import SynthConfig, build_corpus

    with writing_to(dirs={"--out": out}):
        build_corpus(SynthConfig(out_dir=out, hours=hours, seed=seed, labeled_scale=labeled_scale,
                                 dev_minutes=dev_minutes, test_minutes=test_minutes, lm_sentences=lm_sentences,
                                 workers=workers, force=force))
