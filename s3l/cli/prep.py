"""``s3l prep``: manifests for real corpora and the built-in synthetic corpus."""

from __future__ import annotations

import typer

prep_app = typer.Typer(help="Write fairseq-compatible manifests (.tsv/.wrd/.ltr/.phn) for a corpus.",
                       no_args_is_help=True)
