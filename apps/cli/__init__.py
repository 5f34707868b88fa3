"""The ``kgnlp`` command line: one typer sub-app per package, plus ``serve``."""

from __future__ import annotations

import os
import sys

import typer

from apps.cli.cs import app as cs_app
from apps.cli.index import app as index_app
from apps.cli.keys import app as keys_app
from apps.cli.kg import app as kg_app
from apps.cli.models import app as models_app
from apps.cli.recommend import app as recommend_app
from apps.cli.sentiment import app as sentiment_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="kgnlp",
    help="Knowledge-graph-augmented NLP service: models, graphs, indexes and the API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")
app.add_typer(kg_app, name="kg")
app.add_typer(index_app, name="index")
app.add_typer(cs_app, name="cs")
app.add_typer(sentiment_app, name="sentiment")
app.add_typer(recommend_app, name="recommend")
app.add_typer(keys_app, name="keys")


@app.command()
def serve(
    host: str = typer.Option(None, help="bind address (default KGNLP_SERVER__HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default KGNLP_SERVER__PORT or 8000)"),
    workers: int = typer.Option(None, help="worker processes (default KGNLP_SERVER__WORKERS or 1)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Start the API server (models load before the first request is accepted)."""
    import uvicorn

    from apps.core.settings import load_settings

    # Workers re-read settings from the environment, so pass the CLI values through it.
    for key, value in (("HOST", host), ("PORT", port), ("WORKERS", workers)):
        if value is not None:
            os.environ[f"KGNLP_SERVER__{key}"] = str(value)
    # the service logs JSON lines: a model load's progress bar ("Loading weights: 100%|...") would
    # interleave carriage-return frames with them (read when transformers is first imported)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from apps.core.logging_setup import uvicorn_log_config

    settings = load_settings()
    uvicorn.run(
        "apps.main:app_factory",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        workers=settings.server.workers,
        log_level=log_level,
        log_config=uvicorn_log_config(settings.observability),  # JSON lines, PII masked
        access_log=False,  # kgnlp.access logs each request with its route template and request id
        timeout_graceful_shutdown=30,
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    full: bool = typer.Option(False, "--full", help="the README's figures (hours) instead of the quick profile"),
    only: str = typer.Option("", help="comma-separated benchmark names (see --list)"),
    list_: bool = typer.Option(False, "--list", help="list the benchmarks"),
) -> None:
    """Run every benchmark (``--quick`` by default, ~15 min) and write artifacts/bench/REPORT.md + report.json.

    Runs ``benchmarks/harness.py`` of this checkout: the benchmarks live beside the code, not in the package.
    """
    import subprocess
    from pathlib import Path

    from kgnlp.errors import NotFoundError

    harness = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"
    if not harness.is_file():
        raise NotFoundError(f"{harness} not found: kgnlp bench runs from a clone of the repository")
    argv = ["--full" if full else "--quick", *(["--only", only] if only else []), *(["--list"] if list_ else [])]
    raise typer.Exit(subprocess.call([sys.executable, str(harness), *argv, *ctx.args]))


def main() -> None:
    """Console-script entry point: kgnlp errors become one red line and exit code 1."""
    from kgnlp.errors import KgnlpError

    try:
        app()
    except KgnlpError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        sys.exit(1)
