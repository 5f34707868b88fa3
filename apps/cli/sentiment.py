"""`kgnlp sentiment`: commands of the sentiment app."""

from __future__ import annotations

import typer

app = typer.Typer(help="The sentiment app.", no_args_is_help=True)
