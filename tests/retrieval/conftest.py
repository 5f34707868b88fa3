"""Fixtures: a small real corpus (Bitext answers from data/retail), the real embedder and a real graph."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

INTENTS = (
    "cancel_order",
    "track_order",
    "get_refund",
    "change_shipping_address",
    "recover_password",
    "newsletter_subscription",
)
PER_INTENT = 6


@pytest.fixture(scope="session")
def small_bitext(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A source folder with a 36-row Bitext CSV (6 intents) and an empty product taxonomy."""
    src = REPO / "data" / "retail" / "bitext_customer_support.csv"
    out = tmp_path_factory.mktemp("small_retail")
    with src.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        picked: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in reader:
            if row["intent"] in INTENTS and len(picked[row["intent"]]) < PER_INTENT:
                picked[row["intent"]].append(row)
    with (out / "bitext_customer_support.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        for rows in picked.values():
            w.writerows(rows)
    (out / "bestbuy_categories.json").write_text(json.dumps([]))
    return out


@pytest.fixture(scope="session")
def embedder(embedder_path: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from retrieval.embedder import EmbeddingCache, SentenceEmbedder

    cache = EmbeddingCache(tmp_path_factory.mktemp("embcache") / "embeddings.sqlite")
    return SentenceEmbedder(embedder_path, cache=cache)


@pytest.fixture(scope="session")
def retail_home(tmp_path_factory: pytest.TempPathFactory, small_bitext: Path, embedder) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A kgnlp home with the small ``retail`` graph and corpus built (MENTIONS edges included)."""
    from kg.demo import build_demo
    from kg.registry import GraphRegistry
    from retrieval.corpus import build_corpus

    home = tmp_path_factory.mktemp("home")
    with GraphRegistry(home / "graphs") as reg:
        build_demo("retail", reg.get("retail", create=True), small_bitext)
        build_corpus("retail", home, embedder, small_bitext, graphs=reg)
    yield home


@pytest.fixture(scope="session")
def retail_retriever(retail_home: Path, embedder) -> Iterator[object]:  # type: ignore[no-untyped-def]
    from kg.registry import GraphRegistry
    from retrieval.corpus import load_retriever

    reg = GraphRegistry(retail_home / "graphs")
    yield load_retriever("retail", retail_home, embedder, graphs=reg)
    reg.close()
