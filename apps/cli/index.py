"""``kgnlp index``: build retrieval indexes and query them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kgnlp.errors import KgnlpError
from kgnlp.files import default_home

app = typer.Typer(help="Retrieval indexes: build, query.", no_args_is_help=True)

Home = Annotated[
    Path | None, typer.Option("--home", envvar="KGNLP_HOME", help="kgnlp home; indexes live in HOME/indexes/NAME")
]
Corpus = Annotated[str, typer.Option("--corpus", "-c", help="corpus name (retail, banking77, or your own)")]


def _home(home: Path | None) -> Path:
    return home.expanduser() if home else default_home()


def _embedder(home: Path, model: str) -> object:
    from models.provision import ModelCache
    from retrieval.corpus import as_embedder

    return as_embedder(ModelCache(home).resolve(model), home)


def _graphs(home: Path, use_graph: bool) -> object:
    if not use_graph:
        return None
    from kg.registry import GraphRegistry

    return GraphRegistry(home / "graphs")


@app.command()
def build(
    corpus: Corpus = "retail",
    source: Annotated[Path | None, typer.Option(help="source folder (default: data/retail or ../shared/data)")] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when nothing changed")] = False,
    model: Annotated[str, typer.Option(help="embedder: catalog name or model folder")] = "all-minilm-l6-v2",
    kind: Annotated[str, typer.Option(help="FAISS index: auto|flat|hnsw|ivf|ivfpq")] = "auto",
    graph: Annotated[bool, typer.Option(help="link passages to the graph of the same name (MENTIONS edges)")] = True,
    home: Home = None,
) -> None:
    """Build the CORPUS index (idempotent: unchanged source and model → nothing to do)."""
    from retrieval.corpus import build_corpus

    h = _home(home)
    graphs = _graphs(h, graph)
    try:
        rep = build_corpus(corpus, h, _embedder(h, model), source, force=force, graphs=graphs, index_kind=kind)  # type: ignore[arg-type]
    except KgnlpError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from e
    finally:
        if graphs is not None:
            graphs.close()  # type: ignore[attr-defined]
    typer.echo(json.dumps(rep))


@app.command()
def query(
    text: Annotated[str, typer.Argument(help="the query")],
    corpus: Corpus = "retail",
    mode: Annotated[str, typer.Option(help="dense|lexical|graph|hybrid|hybrid+graph")] = "hybrid",
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="passages wanted")] = 5,
    model: Annotated[str, typer.Option(help="embedder: catalog name or model folder")] = "all-minilm-l6-v2",
    graph: Annotated[bool, typer.Option(help="use the graph of the same name when it exists")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    home: Home = None,
) -> None:
    """Retrieve evidence for TEXT from CORPUS."""
    from retrieval.corpus import load_retriever

    h = _home(home)
    graphs = _graphs(h, graph)
    try:
        r = load_retriever(corpus, h, _embedder(h, model), graphs=graphs)
        ev = r.retrieve(text, k, mode)  # type: ignore[arg-type]
    except KgnlpError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from e
    finally:
        if graphs is not None:
            graphs.close()  # type: ignore[attr-defined]
    if as_json:
        typer.echo(json.dumps([e.to_json() for e in ev], ensure_ascii=False))
        return
    for item in ev:
        meta = ", ".join(f"{k}={v}" for k, v in item.metadata.items() if k in ("intent", "category", "relation"))
        snippet = " ".join(item.text.split())[:160]
        typer.echo(f"[{item.citation}] {item.kind} {item.source_id} score={item.score:.4f} {meta}\n    {snippet}")
