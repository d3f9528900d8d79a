"""``s3l prep``: manifests for real corpora and the built-in synthetic corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from s3l.cli.common import BELOW_ONE, csv_list
from s3l.paths import writing_to

prep_app = typer.Typer(help="Write fairseq-compatible manifests (.tsv/.wrd/.ltr/.phn) for a corpus.",
                       no_args_is_help=True)

# Options every real-corpus preparer shares.
OUT = typer.Option(..., "--out", "-o", help="Output directory for the manifests.")
FORCE = typer.Option(False, "--force", help="Overwrite existing outputs.")
SKIP_BAD = typer.Option(False, "--skip-bad", help="Skip bad items (unreadable, empty, multi-channel, too short, "
                        "missing transcript) and list them in OUT/skipped-SPLIT.tsv instead of stopping.")
DOWNMIX = typer.Option(False, "--downmix", help="Accept multi-channel audio; its channels are averaged when "
                       "loaded (later stages must load it with downmixing too).")


@prep_app.command("librispeech")
def librispeech(
    root: Path = typer.Argument(..., help="LibriSpeech directory (holding dev-clean, train-clean-100, ...)."),
    out: Path = OUT,
    splits: str = typer.Option("", "--splits", help="Comma-separated split directories to prepare "
                               "(default: every split found)."),
    force: bool = FORCE,
    skip_bad: bool = SKIP_BAD,
    downmix: bool = DOWNMIX,
) -> None:
    """LibriSpeech: SPLIT/SPEAKER/CHAPTER/*.flac + *.trans.txt -> SPLIT.{tsv,wrd,ltr} per split, dict.ltr.txt."""
    from s3l.prep.librispeech import LibriSpeechConfig, prepare_librispeech

    with writing_to(dirs={"--out": out}):
        prepare_librispeech(LibriSpeechConfig(root=root, splits=tuple(csv_list(splits)), out=out, force=force,
                                              skip_bad=skip_bad, downmix=downmix))


@prep_app.command("librilight")
def librilight(
    root: Path = typer.Argument(..., help="librispeech_finetuning directory (or its parent)."),
    out: Path = OUT,
    force: bool = FORCE,
    skip_bad: bool = SKIP_BAD,
    downmix: bool = DOWNMIX,
) -> None:
    """Libri-light fine-tuning sets -> train-10min (1h fold 0), train-1h (1h), train-10h (1h + 9h)."""
    from s3l.prep.librilight import LibriLightConfig, prepare_librilight

    with writing_to(dirs={"--out": out}):
        prepare_librilight(LibriLightConfig(root=root, out=out, force=force, skip_bad=skip_bad, downmix=downmix))


@prep_app.command("timit")
def timit(
    root: Path = typer.Argument(..., help="TIMIT directory holding TRAIN and TEST (any case)."),
    out: Path = OUT,
    force: bool = FORCE,
    skip_bad: bool = SKIP_BAD,
    downmix: bool = DOWNMIX,
) -> None:
    """TIMIT -> train/dev/test.{tsv,wrd,ltr,phn}: standard split, SA excluded, 39 phone classes per 10 ms."""
    from s3l.prep.timit import TimitConfig, prepare_timit

    with writing_to(dirs={"--out": out}):
        prepare_timit(TimitConfig(root=root, out=out, force=force, skip_bad=skip_bad, downmix=downmix))


@prep_app.command("dir")
def audio_dir(
    root: Path = typer.Argument(..., metavar="AUDIO_DIR", help="Directory searched recursively for audio."),
    out: Path = OUT,
    ext: str = typer.Option("flac,wav", "--ext", help="Comma-separated audio extensions."),
    valid_percent: float = typer.Option(0.01, "--valid-percent", callback=BELOW_ONE, help="Fraction (0-1, as "
                                        "fairseq) of files held out for valid.tsv; 0 writes only train.tsv."),
    seed: int = typer.Option(42, "--seed", min=0, help="Seed of the held-out draw."),
    force: bool = FORCE,
    skip_bad: bool = SKIP_BAD,
    downmix: bool = DOWNMIX,
) -> None:
    """Unlabeled audio folder -> train.tsv (+ valid.tsv), like fairseq's wav2vec_manifest.py."""
    from s3l.prep.folder import DirConfig, prepare_dir

    with writing_to(dirs={"--out": out}):
        prepare_dir(DirConfig(root=root, exts=tuple(csv_list(ext)), valid_percent=valid_percent, seed=seed,
                              out=out, force=force, skip_bad=skip_bad, downmix=downmix))
