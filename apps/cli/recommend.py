"""`kgnlp recommend`: build, train and evaluate the recommend app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from kgnlp.files import default_home

__all__ = ["app"]

app = typer.Typer(help="The recommend app: setup (demo), import, export, train, evaluate.", no_args_is_help=True)
HomeOption = typer.Option(None, "--home", envvar="KGNLP_HOME", help="kgnlp home (default ~/.cache/kgnlp)")
SourceOption = typer.Option(None, help="shared data root with hetrec2011-lastfm-2k/ and kgcn-music-kg/ (lastfm)")
KgOption = typer.Option(
    None,
    "--kg-embeddings",
    help="graph folder with `kgnlp kg train-embeddings` vectors (e.g. HOME/graphs/recommend-<catalogue>)",
)


def _config(catalogue: str, source: Path | None, kg_dir: Path | None, home: Path | None = None) -> Any:
    from apps.recommend.interactions import InteractionLog
    from apps.recommend.setup import load_catalogue
    from apps.recommend.train import FitConfig, entity_init_from_graph

    if kg_dir is None:
        return FitConfig()
    settings, graphs = _registry(home or default_home())
    with graphs, InteractionLog(settings.db_url) as log:
        cat = load_catalogue(graphs, log, catalogue, source)
    return FitConfig(entity_init=entity_init_from_graph(cat, kg_dir))


def _embedder(home: Path) -> Any:
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache

    return load_sentence_embedder(ModelCache(home).ensure("all-minilm-l6-v2"))


class _LazyEmbedder:
    """Loads MiniLM on the first ``encode`` (an up-to-date model needs no encoding, so no load)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._model: Any = None

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        if self._model is None:
            self._model = _embedder(self.home)
        return self._model.encode(*args, **kwargs)


def _feedback(home: Path) -> list[tuple[str, str, float]]:
    from apps.core.settings import load_settings
    from apps.recommend.feedback import FeedbackStore

    store = FeedbackStore(load_settings(home=home).db_url).open()
    try:
        return store.positives()
    finally:
        store.close()


@app.command()
def setup(
    force: bool = typer.Option(False, help="retrain even when up to date"), home: Path | None = HomeOption
) -> None:
    """Build the synthetic demo catalogue and train the served model (idempotent, about a minute)."""
    from apps.recommend.setup import train_model

    home = home or default_home()
    typer.echo(json.dumps(train_model(home, "synthetic", _LazyEmbedder(home), force=force, report=typer.echo)))


@app.command()
def train(
    catalogue: str = typer.Option("synthetic", help="synthetic | lastfm | an imported catalogue"),
    source: Path | None = SourceOption,
    with_feedback: bool = typer.Option(True, help="merge stored feedback plays into the training events"),
    force: bool = typer.Option(False, help="retrain even when up to date"),
    kg_embeddings: Path | None = KgOption,
    home: Path | None = HomeOption,
) -> None:
    """Train the served model of a catalogue (serve it with KGNLP_RECOMMEND__CATALOGUE=<catalogue>)."""
    from apps.recommend.setup import train_model

    home = home or default_home()
    fb = _feedback(home) if with_feedback else []
    cfg = _config(catalogue, source, kg_embeddings, home)
    typer.echo(json.dumps(train_model(home, catalogue, _LazyEmbedder(home), source, fb, cfg, force, report=typer.echo)))


@app.command()
def evaluate(
    catalogue: str = typer.Option("synthetic", help="synthetic | lastfm | an imported catalogue"),
    source: Path | None = SourceOption,
    protocol: str = typer.Option("both", help="ctr (KGCN AUC/F1) | topk (Recall/NDCG@K) | both"),
    k: int = typer.Option(20, min=1, max=100),
    kg_embeddings: Path | None = KgOption,
    home: Path | None = HomeOption,
) -> None:
    """Compare every model offline (see benchmarks/recommend.py for the full benchmark with latency)."""
    from apps.recommend.evaluate import evaluate_ctr, evaluate_topk
    from apps.recommend.interactions import InteractionLog
    from apps.recommend.models.text import encode_items
    from apps.recommend.setup import load_catalogue

    home = home or default_home()
    cfg = _config(catalogue, source, kg_embeddings, home)
    settings, graphs = _registry(home)
    with graphs, InteractionLog(settings.db_url) as log:
        cat = load_catalogue(graphs, log, catalogue, source)
    text = encode_items([cat.item_text(i) for i in range(cat.n_items)], _embedder(home), home / "recommend" / "cache")
    out: dict[str, Any] = {}
    if protocol in ("ctr", "both"):
        out["ctr"] = evaluate_ctr(cat, text, cfg, report=typer.echo)
    if protocol in ("topk", "both"):
        out["topk"] = evaluate_topk(cat, text, cfg, k=k, report=typer.echo)
    typer.echo(json.dumps(out, indent=2))


def _registry(home: Path) -> Any:
    from apps.core.services import open_graph_registry
    from apps.core.settings import load_settings

    settings = load_settings(home=home)
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings, open_graph_registry(settings)


@app.command("import")
def import_(
    catalogue: str = typer.Argument(..., help="catalogue name (new or existing): 1-48 of a-z 0-9 - _"),
    items: Path | None = typer.Option(None, help="items .csv/.jsonl: item_id, name, text, tags (a;b), attributes"),
    relations: Path | None = typer.Option(None, help="facts .csv/.jsonl: head, relation, tail, tail_name"),
    interactions: Path | None = typer.Option(None, help="events .csv/.jsonl: user_id, item_id, weight, ts, event_id"),
    home: Path | None = HomeOption,
) -> None:
    """Import a catalogue into its graph and the interaction log (validated first; re-running changes nothing).

    Then: kgnlp recommend train --catalogue NAME, and serve it with KGNLP_RECOMMEND__CATALOGUE=NAME.
    """
    from apps.recommend.catalogue_graph import catalogue_store
    from apps.recommend.importer import CatalogueFiles, apply_import, read_import
    from apps.recommend.interactions import InteractionLog
    from apps.recommend.setup import check_catalogue_name

    check_catalogue_name(catalogue)
    if items is None and relations is None and interactions is None:
        raise typer.BadParameter("give at least one of --items, --relations, --interactions")
    settings, graphs = _registry(home or default_home())
    with graphs, InteractionLog(settings.db_url) as log:
        store = catalogue_store(graphs, catalogue, create=True)
        batch = read_import(CatalogueFiles(items, relations, interactions), store)
        typer.echo(json.dumps({"catalogue": catalogue, **apply_import(batch, store, log, catalogue)}))


@app.command()
def export(
    catalogue: str = typer.Argument(..., help="synthetic | lastfm | an imported catalogue"),
    out: Path = typer.Option(..., help="folder for items.jsonl, relations.csv, interactions.csv"),
    source: Path | None = SourceOption,
    home: Path | None = HomeOption,
) -> None:
    """Write a catalogue as import files (the import format by example; a subset to import as a new catalogue)."""
    from apps.recommend.importer import write_files
    from apps.recommend.interactions import InteractionLog
    from apps.recommend.setup import load_catalogue

    settings, graphs = _registry(home or default_home())
    with graphs, InteractionLog(settings.db_url) as log:
        cat = load_catalogue(graphs, log, catalogue, source, report=typer.echo)
    files = write_files(cat, out)
    typer.echo(json.dumps({"items": str(files.items), "relations": str(files.relations),
                           "interactions": str(files.interactions), "n_items": cat.n_items,
                           "n_interactions": len(cat.interactions)}))  # fmt: skip
