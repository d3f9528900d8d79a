"""The ``s3l`` command line. It only parses: each command builds a config and calls one library function.

Heavy imports (torch) happen inside commands so ``s3l --help`` stays instant.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.markup import escape

from s3l.console import console_err
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
    from s3l.cli.probe import probe
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
    app.command("probe")(probe)
    app.command("export")(export)


_register()


try:  # the parser's usage errors: typer >= 0.2x vendors click and exports their base class
    from typer import TyperException as _UsageError
except ImportError:  # older typer on top of click
    from click import ClickException as _UsageError


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv``: the arguments, default ``sys.argv[1:]``) and exit with its status.

    A user error -- an :class:`S3LError`, a usage error found by the parser (missing or unknown option, a value out
    of range), or an ``OSError`` that names its file -- prints one red ``error:`` line and exits 2.
    """
    try:
        status = app(args=argv, prog_name="s3l", standalone_mode=False)
    except _UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # a bare ``s3l`` or ``s3l prep``: typer printed the help
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _error(e.format_message().rstrip(".") + hint)
    except typer.Abort:  # end of input at a prompt
        _error("aborted")
    except S3LError as e:
        _error(str(e))
    except OSError as e:
        if e.filename is None:
            raise  # not about a file the user named: a bug
        target = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else str(e.filename)
        _error(f"{target}: {e.strerror}")
    except KeyboardInterrupt:
        console_err.print("[red]interrupted[/]")
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


def _error(message: str) -> NoReturn:
    from s3l.distributed import report_error

    if not report_error(message):  # a worker of --nproc: the launching process prints it (once)
        console_err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    sys.exit(2)
