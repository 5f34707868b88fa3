"""Graph embeddings end to end: train on a store, CLI, fold-in, and GET /kg/entities/{id}/similar."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kg.embeddings.artifacts import EmbeddingArtifact, find_embeddings
from kg.embeddings.data import graph_fingerprint
from kg.embeddings.pipeline import fold_in_new_entities, train_graph_embeddings
from kg.registry import GraphRegistry
from kg.store import Entity, Relation
from tests.conftest import local_client

QUICK = {"epochs": 4, "eval_every": 2, "threads": 1, "device": "cpu", "batch_size": 64}


def tiny_graph() -> tuple[list[Entity], list[Relation]]:
    """Two clusters of products, each in a category, with brands."""
    ents = [Entity(f"p{i}", "Product", f"Product {i}", description="laptop" if i < 6 else "phone") for i in range(12)]
    ents += [Entity("cat:laptops", "Category", "Laptops"), Entity("cat:phones", "Category", "Phones")]
    ents += [Entity(f"b{j}", "Brand", f"Brand {j}") for j in range(3)]
    rels = [Relation(f"p{i}", "IN_CATEGORY", "cat:laptops" if i < 6 else "cat:phones") for i in range(12)]
    rels += [Relation(f"p{i}", "MADE_BY", f"b{i % 3}") for i in range(12)]
    rels += [Relation(f"p{i}", "SIMILAR_TO", f"p{(i + 1) % 6 + (0 if i < 6 else 6)}") for i in range(12)]
    return ents, rels


def fake_text_encoder(texts: list[str]) -> np.ndarray:
    """Deterministic bag-of-characters vectors (stands in for MiniLM in unit tests)."""
    out = np.zeros((len(texts), 16), dtype=np.float32)
    for i, t in enumerate(texts):
        for ch in t.lower():
            out[i, ord(ch) % 16] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    reg = GraphRegistry(tmp_path_factory.mktemp("graphs"))
    ents, rels = tiny_graph()
    reg.get("tiny", create=True).upsert(ents, rels)
    reg.get("untrained", create=True).upsert(ents[:2])
    yield reg
    reg.close()


@pytest.fixture(scope="module")
def client(registry: GraphRegistry):
    from apps.graph.router import router

    app = FastAPI()
    app.include_router(router)
    app.state.services = SimpleNamespace(graphs=registry)
    with local_client(app) as c:
        yield c


def test_train_store_publish_and_similar_route(registry: GraphRegistry, client: TestClient) -> None:
    r = client.get("/kg/entities/p1/similar", params={"graph": "tiny"})
    assert r.status_code == 404 and "kgnlp kg train-embeddings --graph tiny" in r.json()["detail"]
    store = registry.get("tiny")
    art = train_graph_embeddings(
        store, registry.path("tiny"), "complex", graph="tiny", train_options=QUICK, progress=False
    )
    fp = graph_fingerprint(store)
    assert art.path == registry.path("tiny") / "embeddings" / f"complex-{fp}"
    assert art.meta["metrics"]["test"]["n"] > 0 and len(art.entity_ids) == 17
    r = client.get("/kg/entities/p1/similar", params={"graph": "tiny", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "complex" and body["embeddings"] == f"complex-{fp}" and len(body["results"]) == 5
    assert "p1" not in {x["id"] for x in body["results"]} and body["results"][0]["name"]
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for bad in (0, 101, "x"):
        assert client.get("/kg/entities/p1/similar", params={"graph": "tiny", "k": bad}).status_code == 422
    assert client.get("/kg/entities/ghost/similar", params={"graph": "tiny"}).status_code == 404
    assert client.get("/kg/entities/p1/similar", params={"graph": "absent"}).status_code == 404
    r = client.get("/kg/entities/e0/similar", params={"graph": "untrained"})
    assert r.status_code == 404 and "train-embeddings" in r.json()["detail"]


def test_rgcn_text_features_and_fold_in_after_graph_change(tmp_path: Path) -> None:
    with GraphRegistry(tmp_path) as reg:
        store = reg.get("g", create=True)
        ents, rels = tiny_graph()
        store.upsert(ents, rels)
        gdir = reg.path("g")
        art = train_graph_embeddings(
            store, gdir, "rgcn", text_encoder=fake_text_encoder, train_options=QUICK, progress=False
        )
        assert art.meta["text_features"] and art.meta["fingerprint"] == graph_fingerprint(store)
        store.upsert(
            [Entity("p99", "Product", "Product 99", description="laptop")],
            [Relation("p99", "IN_CATEGORY", "cat:laptops"), Relation("p99", "MADE_BY", "b0")],
        )
        assert graph_fingerprint(store) != art.meta["fingerprint"]  # stale embeddings are detectable
        art2, added = fold_in_new_entities(store, gdir, text_encoder=fake_text_encoder)
        assert added == ["p99"] and art2.path == art.path
        back = EmbeddingArtifact.load(find_embeddings(gdir))
        assert "p99" in back and back.meta["folded_in"] == ["p99"]
        assert back.meta["state_fingerprint"] == graph_fingerprint(store)
        assert len(back.similar("p99", 3)) == 3
        assert fold_in_new_entities(store, gdir, text_encoder=fake_text_encoder)[1] == []


def test_cli_train_embeddings(tmp_path: Path) -> None:
    from apps.cli.kg import app

    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    f = tmp_path / "t.txt"
    f.write_text("".join(f"n{i}\tR\tn{(i + 1) % 8}\nn{i}\tS\tn{(i + 3) % 8}\n" for i in range(8)))
    assert runner.invoke(app, ["ingest", str(f), "--format", "triples", "--graph", "t", *home]).exit_code == 0
    args = ["train-embeddings", "--graph", "t", "--model", "rotate", "--epochs", "2", "--no-progress", *home]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert '"model": "rotate"' in r.output and (tmp_path / "graphs" / "t" / "embeddings" / "LATEST").exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "up to date" in r.output
    f.write_text("n0\tR\tn_new\n")
    assert runner.invoke(app, ["ingest", str(f), "--format", "triples", "--graph", "t", *home]).exit_code == 0
    r = runner.invoke(app, ["train-embeddings", "--graph", "t", "--fold-in", *home])
    assert r.exit_code == 0 and "folded in 1 entities" in r.output, r.output
    r = runner.invoke(app, ["train-embeddings", "--graph", "t", "--model", "conve", *home])
    assert r.exit_code == 1
