"""``piumr reproduce``: paper tables and figures (see piumr.reproduce)."""

import typer

reproduce_app = typer.Typer(help="Regenerate the paper's tables and figures.", no_args_is_help=True)
