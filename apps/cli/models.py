"""``kgnlp models``: the model catalog and cache."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from kgnlp.files import default_home
from models.provision import ModelCache

__all__ = ["app"]

app = typer.Typer(help="Model catalog and cache: list, pull, info.", no_args_is_help=True)
console = Console(stderr=True)

HomeOption = typer.Option(None, "--home", envvar="KGNLP_HOME", help="cache root (default ~/.cache/kgnlp)")


def _cache(home: Path | None) -> ModelCache:

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


# --- training toolbox (issue #7): finetune, predict, report -------------------------------------


@app.command()
def finetune(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="run config YAML"),
    set_: list[str] = typer.Option(None, "--set", help="override a config value, e.g. --set train.epochs=1"),
    fresh: bool = typer.Option(False, help="ignore existing checkpoints in the run directory"),
) -> None:
    """Fine-tune as configured (classify or sft; full, LoRA, AdaLoRA, IA3, prompt, QLoRA) into a run directory."""
    import yaml

    from models.config import load_config
    from models.finetune import finetune as run_finetune

    overrides = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    metrics = run_finetune(load_config(config, overrides), resume=not fresh, log=lambda m: console.print(m))
    typer.echo(
        json.dumps({k: metrics.get(k) for k in ("val", "test", "train_seconds", "trainable_params")}, default=str)
    )


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., exists=True, file_okay=False, help="a classifier run directory"),
    input_path: Path = typer.Argument(..., exists=True, dir_okay=False, help="input .csv or .jsonl"),
    out: Path = typer.Option(..., "--out", help="predictions JSONL to write"),
    text_field: str = typer.Option("text", help="column/key holding the text"),
    batch_size: int = typer.Option(64, help="texts per forward pass"),
) -> None:
    """Stream a file through a trained classifier: one JSONL line (label, probabilities) per row."""
    from models.classify import load_classifier, predict_file

    n = predict_file(load_classifier(run_dir, batch_size=batch_size), input_path, out, text_field)
    console.print(f"{n} predictions written to {out}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="classifier run directories"),
    png: Path = typer.Option(None, help="accuracy-vs-latency chart (default: report.png beside the first run)"),
    no_measure: bool = typer.Option(False, help="only read metrics.json (no latency/size measurement)"),
) -> None:
    """Table of accuracy/F1, latency, throughput, parameters, disk size and peak memory; PNG chart."""
    from models.report import collect_rows, plot_rows, print_table

    rows = collect_rows(run_dirs, measure=not no_measure)
    print_table(rows)
    if not no_measure:
        target = plot_rows(rows, png or run_dirs[0].parent / "report.png")
        console.print(f"chart: {target}" if target else "chart skipped: matplotlib is not installed")
