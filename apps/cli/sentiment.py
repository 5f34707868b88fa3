"""`kgnlp sentiment`: commands of the sentiment app."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The sentiment app.", no_args_is_help=True)


@app.command()
def setup(
    force: bool = typer.Option(False, "--force", help="rebuild even when a model is registered"),
    train: bool = typer.Option(
        False, "--train", help="train on the shipped tweets (minutes) instead of using the shipped adapter"
    ),
    home: Path | None = typer.Option(None, "--home", envvar="KGNLP_HOME", help="kgnlp home (default ~/.cache/kgnlp)"),
) -> None:
    """Register the default sentiment model: the shipped adapter (trained on the shipped MIT tweets and
    synthetic sentences) merged into MiniLM in seconds; idempotent (a default built from an earlier
    shipped adapter is replaced). Falls back to training when the adapter is missing."""
    from apps.sentiment.training import train_default
    from kgnlp.files import default_home

    typer.echo(str(train_default(home or default_home(), force=force, train=train)))


@app.command()
def train(
    data: Path | None = typer.Option(None, "--data", help="folder with financial_phrasebank/ (default ../shared/data)"),
    config: str | None = typer.Option(
        None,
        "--config",
        help="recipe: NAME | distill:TEACHER:LAYERS[:pb|pbtw] | ensemble:A+B (default: mpnet-pbsyn, "
        "~40 min, served fp32; minilm-pb: ~7 min, served int8 and several times faster, 4 points less accurate)",
    ),
    home: Path | None = typer.Option(None, "--home", envvar="KGNLP_HOME", help="kgnlp home (default ~/.cache/kgnlp)"),
    seed: int | None = typer.Option(
        None,
        "--seed",
        min=0,
        max=2**32 - 1,
        help="training seed (head initialisation, batch order; the data split stays fixed)",
    ),
) -> None:
    """Train the chosen configuration on PhraseBank (+ the shipped synthetic sentences) and register it
    (served as the newest)."""
    from apps.sentiment.training import CHOSEN, train_chosen
    from kgnlp.files import default_home

    overrides = {"seed": seed} if seed is not None else None
    typer.echo(str(train_chosen(home or default_home(), data, config or CHOSEN, train_overrides=overrides)))


@app.command()
def classify(
    texts: list[str],
    home: Path | None = typer.Option(None, "--home", envvar="KGNLP_HOME", help="kgnlp home (default ~/.cache/kgnlp)"),
) -> None:
    """Classify texts with the newest registered model (one JSON line each)."""
    import json
    from dataclasses import asdict

    from apps.sentiment.classifier import load_latest
    from kgnlp.files import default_home

    clf = load_latest(home or default_home())
    for text, p in zip(texts, clf.predict(texts), strict=True):
        typer.echo(json.dumps({"text": text, **asdict(p)}))


@app.command()
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV (header) or JSONL of events"),
    batch: int = typer.Option(256, min=1, max=1000, help="events per ingest batch"),
    source: str = typer.Option("replay", help="source recorded for events that carry none"),
) -> None:
    """Backfill events from a file: each row needs id, text and timestamp (ISO 8601 or Unix seconds);
    source and entity (id or ticker) are optional. Idempotent: already stored ids are skipped."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from apps.sentiment.events_file import read_events
    from apps.sentiment.service import open_offline

    events = read_events(file, default_source=source)
    svc = open_offline()
    inserted, dupes, fired, resolved = 0, 0, 0, 0
    t0 = time.perf_counter()
    try:
        with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("events", total=len(events))
            for i in range(0, len(events), batch):
                summary = svc.ingest(events[i : i + batch])
                inserted += summary.inserted
                dupes += len(summary.duplicates)
                fired += sum(a["change"] == "alert.fired" for a in summary.alerts)
                resolved += sum(a["change"] == "alert.resolved" for a in summary.alerts)
                bar.advance(task, len(events[i : i + batch]))
    finally:
        svc.close()
    dt = time.perf_counter() - t0
    typer.echo(
        f"events={len(events)} inserted={inserted} duplicates={dupes} alerts_fired={fired} "
        f"alerts_resolved={resolved} seconds={dt:.1f} events_per_s={len(events) / max(dt, 1e-9):.0f}"
    )
