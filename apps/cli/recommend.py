"""`kgnlp recommend`: build, train and evaluate the recommend app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from kgnlp.files import default_home

__all__ = ["app"]

app = typer.Typer(help="The recommend app: setup (demo), train, evaluate.", no_args_is_help=True)
HomeOption = typer.Option(None, "--home", envvar="KGNLP_HOME", help="kgnlp home (default ~/.cache/kgnlp)")
SourceOption = typer.Option(None, help="shared data root with hetrec2011-lastfm-2k/ and kgcn-music-kg/ (lastfm)")
KgOption = typer.Option(
    None, "--kg-embeddings", help="graph folder with `kgnlp kg train-embeddings` vectors (e.g. HOME/graphs/music)"
)


def _config(catalogue: str, source: Path | None, kg_dir: Path | None) -> Any:
    from apps.recommend.setup import build_catalogue
    from apps.recommend.train import FitConfig, entity_init_from_graph

    if kg_dir is None:
        return FitConfig()
    return FitConfig(entity_init=entity_init_from_graph(build_catalogue(catalogue, source), kg_dir))


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
    catalogue: str = typer.Option("synthetic", help="synthetic | lastfm"),
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
    cfg = _config(catalogue, source, kg_embeddings)
    typer.echo(json.dumps(train_model(home, catalogue, _LazyEmbedder(home), source, fb, cfg, force, report=typer.echo)))


@app.command()
def evaluate(
    catalogue: str = typer.Option("synthetic", help="synthetic | lastfm"),
    source: Path | None = SourceOption,
    protocol: str = typer.Option("both", help="ctr (KGCN AUC/F1) | topk (Recall/NDCG@K) | both"),
    k: int = typer.Option(20, min=1, max=100),
    kg_embeddings: Path | None = KgOption,
    home: Path | None = HomeOption,
) -> None:
    """Compare every model offline (see benchmarks/recommend.py for the full benchmark with latency)."""
    from apps.recommend.evaluate import evaluate_ctr, evaluate_topk
    from apps.recommend.models.text import encode_items
    from apps.recommend.setup import build_catalogue

    home = home or default_home()
    cfg = _config(catalogue, source, kg_embeddings)
    cat = build_catalogue(catalogue, source)
    text = encode_items([cat.item_text(i) for i in range(cat.n_items)], _embedder(home), home / "recommend" / "cache")
    out: dict[str, Any] = {}
    if protocol in ("ctr", "both"):
        out["ctr"] = evaluate_ctr(cat, text, cfg, report=typer.echo)
    if protocol in ("topk", "both"):
        out["topk"] = evaluate_topk(cat, text, cfg, k=k, report=typer.echo)
    typer.echo(json.dumps(out, indent=2))
