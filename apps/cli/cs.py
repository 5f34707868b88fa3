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
    force: bool = typer.Option(False, help="retrain the intent classifier and re-measure the engines"),
    generator: bool = typer.Option(True, help="also install the shipped adapter and choose the decode engine"),
    home: Path | None = HomeOption,
) -> None:
    """Train the intent classifier, install the shipped ``customer_service`` adapter and pick the
    fastest decode engine for this CPU (each step is skipped when it is up to date)."""
    from apps.customer_service.setup import train_intents

    home = home or default_home()
    typer.echo(json.dumps(train_intents(home, _embedder(home), source, force)))
    if not generator:
        return
    from apps.core.settings import load_settings
    from apps.customer_service.adapter import install
    from models.catalog import CATALOG
    from models.engine import choose_engine

    typer.echo(json.dumps({"adapter": install(home)}))
    name = load_settings(home=home).models.generator
    if name not in CATALOG or CATALOG[name].gguf_file is None:  # a local or hub model: torch serves it
        return
    choice = choose_engine(home, name, force=force, report=lambda msg: typer.echo(msg, err=True))
    typer.echo(json.dumps({k: choice[k] for k in ("engine", "quantization", "tokens_per_s", "cpu_key")}))
    if choice["engine"] == "llama.cpp":  # merge the adapters into GGUF now, not at the first start
        from models.llamacpp import GgufAdapters
        from models.provision import ModelCache

        adapters = GgufAdapters(ModelCache(home).gguf(name), home / "gguf" / "merged", None)
        for name in adapters.register_directory(home / "adapters"):
            typer.echo(json.dumps({"merged_gguf": str(adapters.merged_path(name))}))


@app.command("ship-adapter")
def ship_adapter(
    run_dir: Path = typer.Argument(Path("runs/cs_sft"), help="the finetune run of data/retail/cs_sft.yaml"),
) -> None:
    """Write the bf16 ``customer_service`` adapter the repository ships (data/retail/adapters) from a run."""
    from apps.customer_service.adapter import SHIPPED, ship

    record = ship(run_dir)
    typer.echo(json.dumps({"shipped": str(SHIPPED), "metrics": record["metrics"]}, default=str))


@app.command()
def ask(
    message: str,
    session: str = typer.Option("cli", help="session id"),
    home: Path | None = HomeOption,
) -> None:
    """Answer one message with the full pipeline (loads models; for trying things out)."""
    import asyncio
    from dataclasses import asdict

    from apps.core.services import build_services
    from apps.core.settings import load_settings

    services = build_services(load_settings(**({"home": home} if home else {})))
    try:
        if services.customer_service is None:
            raise typer.BadParameter("customer service is not set up: run `kgnlp cs setup` first")
        from apps.customer_service.sessions import LOCAL

        result = asyncio.run(services.customer_service.answer(session, message, owner=LOCAL))
        typer.echo(json.dumps(asdict(result), indent=2))
    finally:
        services.close()
