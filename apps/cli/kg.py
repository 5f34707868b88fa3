"""``kgnlp kg``: ingest files, build demo graphs, inspect and query graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from kgnlp.errors import KgnlpError
from kgnlp.files import default_home

app = typer.Typer(help="Knowledge graph: ingest, demo graphs, queries.", no_args_is_help=True)

Home = Annotated[
    Path | None,
    typer.Option("--home", envvar="KGNLP_HOME", help="kgnlp home; graphs live in HOME/graphs/NAME"),
]
Graph = Annotated[str, typer.Option("--graph", "-g", help="graph name")]


def _root(home: Path | None) -> Path:
    return (home.expanduser() if home else default_home()) / "graphs"


def _fail(e: Exception) -> typer.Exit:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="file or directory to ingest")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv|tsv|jsonl|triples")] = "csv",
    graph: Graph = "default",
    home: Home = None,
    create_missing: Annotated[bool, typer.Option(help="create bare entities for unknown relation endpoints")] = True,
    source: Annotated[str, typer.Option(help="provenance recorded on plain triples")] = "",
) -> None:
    """Validate and load PATH into a graph as one all-or-nothing batch."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from kg.ingest import ingest_path
    from kg.registry import GraphRegistry

    try:
        with (
            GraphRegistry(_root(home)) as reg,
            Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), transient=True) as bar,
        ):
            store = reg.get(graph, create=True)
            task = bar.add_task("reading", total=None)

            def progress(stage: str, done: int, total: int) -> None:
                bar.update(task, description=stage, completed=done, total=total or None)

            rep = ingest_path(
                store,
                path,
                format,  # type: ignore[arg-type]  # typer validates the choice
                create_missing=create_missing,
                source=source,
                progress=progress,
            )
    except KgnlpError as e:
        raise _fail(e) from e
    r = rep.result
    typer.echo(
        f"ingested {rep.rows} rows from {len(rep.files)} file(s) into {graph!r} in "
        f"{rep.seconds:.2f} s ({rep.triples_per_s:,.0f} relations/s): "
        f"+{r.entities_added} entities, ~{r.entities_updated} updated, "
        f"+{r.relations_added} relations, ~{r.relations_updated} updated"
    )


DEMO_MARKER = "demo.json"
"""In an embedded demo graph's folder: the recipe version that built it."""


@app.command("build-demo")
def build_demo_cmd(
    name: Annotated[str, typer.Argument(help="retail | finance | music")],
    source: Annotated[
        Path | None, typer.Option(help="source folder (music: the shared data root, e.g. ../shared/data)")
    ] = None,
    force: Annotated[bool, typer.Option(help="rebuild from scratch even if built")] = False,
    home: Home = None,
) -> None:
    """Build a demo graph (skipped when this recipe version built it already, unless --force).

    An embedded graph an older recipe built is updated in place (its entities and relations
    replaced or added; one atomic write); ``--force`` starts from an empty graph instead.
    """
    from kg.demo import DEMO_GRAPHS, RECIPE_VERSIONS, build_demo
    from kg.registry import GraphRegistry
    from kgnlp.files import atomic_write_json

    if name not in DEMO_GRAPHS:
        raise _fail(ValueError(f"demo graph must be one of {sorted(DEMO_GRAPHS)}, got {name!r}"))
    root = _root(home)
    version = RECIPE_VERSIONS[name]
    try:
        with GraphRegistry(root) as reg:
            marker = reg.path(name) / DEMO_MARKER
            embedded = reg.backend != "neo4j"
            if reg.exists(name) and not force and reg.get(name).stats().entities > 0:
                if not embedded or _recipe_version(marker) == version:
                    typer.echo(f"graph {name!r} already built at {reg.path(name)} (use --force)")
                    return
                typer.echo(f"graph {name!r} was built by an earlier recipe: updating it to version {version}")
            if force:
                shutil.rmtree(reg.path(name), ignore_errors=True)
            info = build_demo(name, reg.get(name, create=True), source)
            if embedded:
                atomic_write_json(marker, {"graph": name, "recipe_version": version})
    except KgnlpError as e:
        raise _fail(e) from e
    typer.echo(json.dumps({**info, "recipe_version": version}))


def _recipe_version(marker: Path) -> int | None:
    try:
        return int(json.loads(marker.read_text())["recipe_version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@app.command()
def stats(graph: Graph = "default", home: Home = None) -> None:
    """Print entity and relation counts by type."""
    from kg.registry import GraphRegistry

    try:
        with GraphRegistry(_root(home), read_only=True) as reg:
            st = reg.get(graph).stats()
    except KgnlpError as e:
        raise _fail(e) from e
    typer.echo(
        json.dumps(
            {
                "graph": graph,
                "entities": st.entities,
                "relations": st.relations,
                "entity_types": st.entity_types,
                "relation_types": st.relation_types,
            },
            indent=2,
        )
    )


@app.command()
def search(
    q: Annotated[str, typer.Argument(help="name or alias")],
    graph: Graph = "default",
    home: Home = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
) -> None:
    """Search entities by name or alias."""
    from kg.registry import GraphRegistry

    try:
        with GraphRegistry(_root(home), read_only=True) as reg:
            hits = reg.get(graph).find(q, mode="contains", limit=limit)
    except KgnlpError as e:
        raise _fail(e) from e
    for hit in hits:
        typer.echo(f"{hit.id}\t{hit.type}\t{hit.display_name()}")


@app.command()
def link(
    text: Annotated[str, typer.Argument(help="text to link")],
    graph: Graph = "default",
    home: Home = None,
) -> None:
    """Find mentions of the graph's entities in TEXT."""
    from kg.registry import GraphRegistry

    try:
        with GraphRegistry(_root(home), read_only=True) as reg:
            mentions = reg.linker(graph).link(text)
    except KgnlpError as e:
        raise _fail(e) from e
    for m in mentions:
        typer.echo(f"{m.start}-{m.end}\t{m.surface}\t{m.entity_id}\t{m.name}\t{m.score:.2f}\t{m.method}")


@app.command("train-embeddings")
def train_embeddings(
    graph: Graph = "default",
    model: Annotated[str, typer.Option("--model", "-m", help="complex|distmult|rotate|transe|rgcn")] = "complex",
    home: Home = None,
    dim: Annotated[int | None, typer.Option(help="vector width (default: the model's preset)")] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="maximum epochs")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="cap on training time")] = None,
    seed: Annotated[int, typer.Option(help="seed for split, init and training")] = 0,
    device: Annotated[str, typer.Option(help="auto|cpu|cuda")] = "auto",
    text_model: Annotated[
        Path | None,
        typer.Option(
            help="sentence-transformers folder for R-GCN text features (default: HOME/models/all-minilm-l6-v2)"
        ),
    ] = None,
    fold_in: Annotated[bool, typer.Option("--fold-in", help="only embed entities added since training")] = False,
    force: Annotated[bool, typer.Option(help="retrain even if embeddings of this graph state exist")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Train entity embeddings for a graph and write them (+ a FAISS index) next to it."""
    from collections.abc import Callable
    from typing import Any

    from kg.embeddings.artifacts import find_embeddings
    from kg.embeddings.data import graph_fingerprint
    from kg.embeddings.pipeline import GRAPH_PRESETS, fold_in_new_entities, train_graph_embeddings
    from kg.registry import GraphRegistry

    if model not in GRAPH_PRESETS:
        raise _fail(ValueError(f"model must be one of {sorted(GRAPH_PRESETS)}, got {model!r}"))
    root = _root(home)

    def encoder() -> Callable[[list[str]], Any] | None:
        if model != "rgcn" and not fold_in:
            return None
        from models.loading import load_sentence_embedder

        path: Path = text_model or (home.expanduser() if home else default_home()) / "models" / "all-minilm-l6-v2"
        if not path.exists():
            if text_model is not None:
                raise _fail(FileNotFoundError(f"text model folder not found: {path}"))
            return None  # R-GCN then learns free entity vectors instead of text features
        loaded: list[Any] = []

        def encode(texts: list[str]) -> Any:  # loads the model on first use only
            if not loaded:
                loaded.append(load_sentence_embedder(path))
            return loaded[0].encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)

        return encode

    try:
        with GraphRegistry(root) as reg:
            store = reg.get(graph)
            gdir = reg.path(graph)
            if fold_in:
                art, added = fold_in_new_entities(store, gdir, text_encoder=encoder(), model=None)
                typer.echo(f"folded in {len(added)} entities into {art.path}")
                return
            if not force:
                fp = graph_fingerprint(store)
                try:
                    existing = find_embeddings(gdir, model)
                except KgnlpError:
                    existing = None
                if existing is not None and existing.name == f"{model}-{fp}":
                    typer.echo(f"embeddings up to date: {existing} (use --force to retrain)")
                    return
            opts: dict[str, object] = {"device": device}
            if epochs is not None:
                opts["epochs"] = epochs
            if max_minutes is not None:
                opts["max_minutes"] = max_minutes
            art = train_graph_embeddings(
                store,
                gdir,
                model,
                graph=graph,
                text_encoder=encoder(),
                dim=dim,
                train_options=opts,
                seed=seed,
                progress=progress,
                log=typer.echo,
            )
    except KgnlpError as e:
        raise _fail(e) from e
    test = art.meta["metrics"]["test"] or {}
    typer.echo(
        json.dumps(
            {
                "graph": graph,
                "model": model,
                "path": str(art.path),
                "entities": len(art.entity_ids),
                "test_mrr": round(test.get("mrr", float("nan")), 4),
                "test_hits10": round(test.get("hits10", float("nan")), 4),
                "minutes": round(art.meta["training"]["seconds"] / 60, 2),
            }
        )
    )
