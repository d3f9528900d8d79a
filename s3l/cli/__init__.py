"""The ``s3l`` command line. It only parses: each command builds a config and calls one library function.

Heavy imports (torch) happen inside commands so ``s3l --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

from s3l.cli.common import console_err
from s3l.errors import S3LError

app = typer.Typer(
    name="s3l",
    help="Self-supervised speech representation learning: wav2vec 2.0 and HuBERT, from audio to WER.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _register() -> None:
    """Commands in pipeline order (the order ``s3l --help`` lists them)."""
    from s3l.cli.analyze import analyze_units
    from s3l.cli.cluster import cluster
    from s3l.cli.decode import decode
    from s3l.cli.export import export
    from s3l.cli.finetune import finetune
    from s3l.cli.lm import lm
    from s3l.cli.prep import prep_app
    from s3l.cli.pretrain import pretrain
    from s3l.cli.score import score
    from s3l.cli.synth import synth

    prep_app.command("synth")(synth)
    prep_app.command("lm")(lm)
    app.add_typer(prep_app, name="prep")
    app.command("cluster")(cluster)
    app.command("pretrain")(pretrain)
    app.command("finetune")(finetune)
    app.command("decode")(decode)
    app.command("score")(score)
    app.command("analyze-units")(analyze_units)
    app.command("export")(export)


_register()


def main() -> None:
    try:
        app()
    except S3LError as e:
        console_err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console_err.print("[red]interrupted[/]")
        sys.exit(130)
