"""``s3l decode``: hypotheses for a split from a fine-tuned CTC checkpoint, greedy or with a KenLM LM (lexicon or
pyctcdecode beam search), optional word timings."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from s3l.cli.common import FINITE, NON_NEGATIVE
from s3l.paths import writing_to


def _UNK(value: float | None) -> float | None:
    """A number or -inf (an unknown word is never output)."""
    if value is not None and (math.isnan(value) or value == math.inf):
        raise typer.BadParameter(f"{value:g} is not a number or -inf")
    return value


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
    decoder: str = typer.Option(
        None, "--decoder", metavar="greedy|beam|lexicon",
        help="greedy: best path, no LM. beam: pyctcdecode's prefix beam search with --lm. lexicon: flashlight-text's "
        "lexicon-constrained beam search with --lm (the papers' wav2letter decoder; only lexicon words come out). "
        "Default: lexicon with --lm, greedy without.", show_default=False,
    ),
    lm: Path = typer.Option(
        None, "--lm", help="KenLM language model (.arpa, or a binary with its .arpa beside it or --unigrams, or "
        "--lexicon)."
    ),
    unigrams: Path = typer.Option(
        None, "--unigrams", help="Word list the LM decoders may output (default: the LM's 1-grams)."
    ),
    lexicon: Path = typer.Option(
        None, "--lexicon", help="lexicon: wav2letter lexicon, one 'WORD W O R D |' per line (default: the LM's "
        "words (or --unigrams) spelled in the model's letters; words with other letters are skipped and counted)."
    ),
    lm_weight: float = typer.Option(
        2.0, "--lm-weight", callback=FINITE,
        help="Weight of the LM log-probability: log10 for lexicon (wav2letter / fairseq), natural log for beam "
        "(pyctcdecode). 2 and --word-score -1 are fairseq's wav2vec 2.0 README values."
    ),
    word_score: float = typer.Option(-1.0, "--word-score", callback=FINITE, help="Score added per word."),
    beam: int = typer.Option(
        50, "--beam", min=1, help="Beam size. The papers tune with 500 for the 4-gram and test with 1500 (wav2vec 2.0 "
        "§4.4); 50 keeps CPU decoding affordable."
    ),
    beam_threshold: float = typer.Option(
        None, "--beam-threshold", callback=NON_NEGATIVE, show_default=False,
        help="Drop hypotheses scoring this far below the best. Default: 25 for lexicon (fairseq infer.py), 10 for "
        "beam (pyctcdecode's beam_prune_logp -10)."
    ),
    beam_size_token: int = typer.Option(
        None, "--beam-size-token", min=1, show_default=False,
        help="Try only the best N symbols of each frame, bounding the cost on flat posteriors. Default: all for "
        "lexicon (fairseq's 100 exceeds a letter vocabulary), 8 for beam."
    ),
    token_min_logp: float = typer.Option(
        None, "--token-min-logp", callback=FINITE, show_default=False,
        help="beam: skip symbols below this log-probability unless they are a frame's best (default -5)."
    ),
    unk_score: float = typer.Option(
        None, "--unk-score", callback=_UNK, show_default=False,
        help="Score of a word outside the lexicon / unigrams. lexicon: added per such word, default -inf (never, "
        "fairseq's --unk-weight). beam: pyctcdecode's offset in log10 before --lm-weight, default -10."
    ),
    sil_score: float = typer.Option(
        None, "--sil-score", callback=FINITE, show_default=False,
        help="lexicon: score added per frame of silence (| between words), default 0 (fairseq's --sil-weight)."
    ),
    smearing: str = typer.Option(
        None, "--smearing", show_default=False,
        help="lexicon: LM look-ahead inside a word from the unigrams of the words below it: max (fairseq's, the "
        "default), logadd or none (no look-ahead; better with a strongly contextual LM, see README)."
    ),
    log_add: bool = typer.Option(
        False, "--log-add", help="lexicon: score a hypothesis by the sum over its CTC paths rather than the best path "
        "(fairseq's decoder takes the best)."
    ),
    ctm: bool = typer.Option(
        False, "--ctm", help="Also write HYPDIR/SPLIT.ctm: 'utt-id 1 start duration WORD' per word, in seconds, "
        "from the CTC path of the chosen hypothesis."
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
    """Decode a split: greedy, or beam search with a KenLM model (lexicon or pyctcdecode); LM weight tuning; RTF;
    word timings."""
    from s3l import distributed
    from s3l.decode.decoder import SearchOptions
    from s3l.decode.run import DecodeConfig
    from s3l.decode.run import decode as run

    with writing_to(dirs={"--out": out}):
        distributed.maybe_relaunch(nproc)
        run(DecodeConfig(
            data=data, split=split, out=out, checkpoint=checkpoint, emissions=emissions,
            save_emissions=save_emissions, decoder=decoder, lm=lm, unigrams=unigrams, lexicon=lexicon,
            search=SearchOptions(beam=beam, lm_weight=lm_weight, word_score=word_score, beam_threshold=beam_threshold,
                                 beam_size_token=beam_size_token, token_min_logp=token_min_logp, unk_score=unk_score,
                                 sil_score=sil_score, smearing=smearing, log_add=True if log_add else None),
            ctm=ctm,
            tune=tune, tune_split=tune_split, tune_trials=tune_trials, lm_weight_range=(0.0, lm_weight_max),
            word_score_range=(-word_score_max, word_score_max), max_tokens=max_tokens, batch_size=batch_size,
            device=device, force=force,
        ))
