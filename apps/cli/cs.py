"""``kgnlp cs``: set up and try the customer-service app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from kgnlp.files import default_home

__all__ = ["app"]

app = typer.Typer(help="Customer service: set-up (intent classifier) and a one-shot question.", no_args_is_help=True)
HomeOption = typer.Option(None, "--home", envvar="KGNLP_HOME", help="kgnlp home (default ~/.cache/kgnlp)")


def _embedder(home: Path) -> Any:
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache

    return load_sentence_embedder(ModelCache(home).ensure("all-minilm-l6-v2"))


@app.command()
def setup(
    source: Path | None = typer.Option(None, help="Bitext CSV (default data/retail/bitext_customer_support.csv)"),
    force: bool = typer.Option(False, help="retrain even when up to date"),
    home: Path | None = HomeOption,
) -> None:
    """Train the intent classifier (idempotent: skipped when the data has not changed)."""
    from apps.customer_service.setup import train_intents

    home = home or default_home()
    typer.echo(json.dumps(train_intents(home, _embedder(home), source, force)))


@app.command()
def ask(
    message: str,
    session: str = typer.Option("cli", help="session id"),
    home: Path | None = HomeOption,
) -> None:
    """Answer one message with the full pipeline (loads models; for trying things out)."""
    import asyncio
    from dataclasses import asdict

    from apps.services import build_services
    from apps.settings import load_settings

    services = build_services(load_settings(**({"home": home} if home else {})))
    try:
        if services.customer_service is None:
            raise typer.BadParameter("customer service is not set up: run `kgnlp cs setup` first")
        result = asyncio.run(services.customer_service.answer(session, message))
        typer.echo(json.dumps(asdict(result), indent=2))
    finally:
        services.close()
