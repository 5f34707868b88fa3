"""`kgnlp recommend`: commands of the recommend app."""

from __future__ import annotations

import typer

app = typer.Typer(help="The recommend app.", no_args_is_help=True)
