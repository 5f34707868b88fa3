"""``kgnlp models``: the model catalog and cache."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kgnlp.files import default_home

__all__ = ["app"]

app = typer.Typer(help="Model catalog and cache: list, pull, info.", no_args_is_help=True)
console = Console(stderr=True)

HomeOption = typer.Option(None, "--home", envvar="KGNLP_HOME", help="cache root (default ~/.cache/kgnlp)")


def _cache(home: Path | None):  # type: ignore[no-untyped-def]
    from models.provision import ModelCache

    return ModelCache(home or default_home(), report=lambda msg: console.print(f"[dim]•[/dim] {msg}"))


@app.command("list")
def list_models(home: Path | None = HomeOption) -> None:
    """Show the catalog and what is cached."""
    from models.catalog import CATALOG

    cache = _cache(home)
    table = Table("name", "kind", "licence", "download", "source", "cached")
    for m in CATALOG.values():
        table.add_row(
            m.name, m.kind, m.license, f"{m.download_bytes / 1e6:.0f} MB",
            f"pypi:{m.source.requirement}", "yes" if cache.manifest(m.name) else "no",
        )  # fmt: skip
    Console().print(table)


@app.command()
def pull(
    names: list[str] = typer.Argument(None, help="catalog names (default: the service's default models)"),
    force: bool = typer.Option(False, help="fetch and prepare again even when cached"),
    home: Path | None = HomeOption,
) -> None:
    """Fetch, verify and prepare models into the cache (idempotent)."""
    from models.catalog import DEFAULT_EMBEDDER, DEFAULT_GENERATOR

    cache = _cache(home)
    for name in names or [DEFAULT_GENERATOR, DEFAULT_EMBEDDER]:
        with console.status(f"pulling {name}"):
            path = cache.pull(name, force=force)
        typer.echo(path)


@app.command()
def info(name: str, home: Path | None = HomeOption) -> None:
    """Show a model's catalog entry, cache location and integrity."""
    import json

    from models.catalog import get_model

    model = get_model(name)
    cache = _cache(home)
    problems = cache.verify(name)
    info = {
        "name": model.name,
        "kind": model.kind,
        "description": model.description,
        "license": model.license,
        "source": f"pypi:{model.source.requirement}",
        "wheel_sha256": model.source.sha256,
        "download_bytes": model.download_bytes,
        "path": str(cache.path(name)),
        "cached": cache.manifest(name) is not None,
        "intact": not problems,
        "problems": problems,
    }
    typer.echo(json.dumps(info, indent=2))
