"""``s3l decode``: hypotheses for a split from a fine-tuned CTC checkpoint, greedy or with a KenLM LM."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import FINITE, NON_NEGATIVE
from s3l.paths import writing_to


def decode(
    data: Path = typer.Option(..., "--data", help="Manifest directory with SPLIT.tsv (and SPLIT.wrd for WER)."),
    split: str = typer.Option("test", "--split", help="Split to decode."),
    out: Path = typer.Option(..., "--out", help="HYPDIR: writes SPLIT.hyp, SPLIT.ref, SPLIT.json."),
    checkpoint: Path = typer.Option(
        None, "--checkpoint", help="Fine-tuned CTC checkpoint (e.g. EXP/checkpoint_best.safetensors)."
    ),
    emissions: Path = typer.Option(
        None, "--emissions", help="Directory with SPLIT.emissions.npz from an earlier --save-emissions run: decode "
        "(and tune) without running the model. Replaces --checkpoint."
    ),
    save_emissions: bool = typer.Option(
        False, "--save-emissions", help="Also write the model's log-probabilities to HYPDIR/SPLIT.emissions.npz "
        "(and for --tune-split), for later runs with --emissions."
    ),
    lm: Path = typer.Option(
        None, "--lm", help="KenLM language model (.arpa, or a binary with its .arpa beside it or --unigrams). "
        "Without it: greedy decoding."
    ),
    unigrams: Path = typer.Option(
        None, "--unigrams", help="Word list the beam search may output (default: the LM's 1-grams)."
    ),
    lm_weight: float = typer.Option(
        2.0, "--lm-weight", callback=FINITE, help="Weight of the LM log-probability (natural log)."
    ),
    word_score: float = typer.Option(-1.0, "--word-score", callback=FINITE, help="Score added per word."),
    beam: int = typer.Option(50, "--beam", min=1, help="Beam width."),
    beam_prune_logp: float = typer.Option(
        -10.0, "--beam-prune-logp", callback=FINITE, help="Drop beams whose score is this far below the best."
    ),
    token_min_logp: float = typer.Option(
        -5.0, "--token-min-logp", callback=FINITE,
        help="Skip symbols below this log-probability unless they are a frame's best."
    ),
    unk_score: float = typer.Option(
        -10.0, "--unk-score", callback=FINITE,
        help="Penalty (log10, before --lm-weight) for words outside the LM's unigrams."
    ),
    tune: bool = typer.Option(
        False, "--tune", help="Search the LM weight and word score on --tune-split (WER), then decode with the best."
    ),
    tune_split: str = typer.Option("dev", "--tune-split", help="Split with transcripts to tune on."),
    tune_trials: int = typer.Option(64, "--tune-trials", min=1, help="Number of (LM weight, word score) pairs to try."),
    lm_weight_max: float = typer.Option(
        5.0, "--tune-lm-weight-max", callback=NON_NEGATIVE, help="Tuning range: LM weight in [0, this]."
    ),
    word_score_max: float = typer.Option(
        5.0, "--tune-word-score-max", callback=NON_NEGATIVE, help="Tuning range: word score in [-this, this]."
    ),
    max_tokens: int = typer.Option(
        3_200_000, "--max-tokens", min=1, help="Audio samples per forward batch, padding included (200 s at 16 kHz)."
    ),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="At most this many utterances per forward batch."),
    nproc: int = typer.Option(1, "--nproc", help="Processes (utterances are sharded; hypotheses gathered)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (for the model forward)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs in HYPDIR."),
) -> None:
    """Decode a split: greedy, or pyctcdecode beam search with a KenLM model; optional LM weight tuning; RTF."""
    from s3l import distributed
    from s3l.decode.ctc import BeamOptions
    from s3l.decode.run import DecodeConfig
    from s3l.decode.run import decode as run

    with writing_to(dirs={"--out": out}):
        distributed.maybe_relaunch(nproc)
        run(DecodeConfig(
            data=data, split=split, out=out, checkpoint=checkpoint, emissions=emissions,
            save_emissions=save_emissions, lm=lm, unigrams=unigrams,
            beam=BeamOptions(beam=beam, lm_weight=lm_weight, word_score=word_score, beam_prune_logp=beam_prune_logp,
                             token_min_logp=token_min_logp, unk_score=unk_score),
            tune=tune, tune_split=tune_split, tune_trials=tune_trials, lm_weight_range=(0.0, lm_weight_max),
            word_score_range=(-word_score_max, word_score_max), max_tokens=max_tokens, batch_size=batch_size,
            device=device, force=force,
        ))
