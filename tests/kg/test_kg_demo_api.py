"""Demo graphs, the graph registry, the /kg API and the CLI sub-app."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kg.demo import DEMO_GRAPHS, build_demo
from kg.registry import GraphRegistry
from kgnlp.errors import ConfigurationError, NotFoundError, ValidationError
from tests.conftest import local_client


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory):
    reg = GraphRegistry(tmp_path_factory.mktemp("graphs"))
    build_demo("finance", reg.get("finance", create=True), None)
    yield reg
    reg.close()


def test_demo_catalogue() -> None:
    assert {n: g.shipped for n, g in DEMO_GRAPHS.items()} == {"retail": True, "finance": True, "music": False}
    with pytest.raises(ConfigurationError):
        build_demo("nope", None, None)  # type: ignore[arg-type]


def test_finance_demo_is_idempotent_and_links_issue_example(registry: GraphRegistry) -> None:
    store = registry.get("finance")
    st = store.stats()
    assert st.entity_types["Company"] == 503 and st.relation_types["PEER_OF"] > 1000
    assert build_demo("finance", store, None)["added"] == 0
    ms = registry.linker("finance").link("Is $NVDA doing better than AMD?")
    assert [(m.entity_id, m.name) for m in ms] == [
        ("company:NVDA", "Nvidia"),
        ("company:AMD", "Advanced Micro Devices"),
    ]
    peers = store.neighbors("company:NVDA", relation_types=["PEER_OF"])
    assert "company:AMD" in peers.entities


@pytest.mark.slow
def test_retail_demo(tmp_path: Path) -> None:
    reg = GraphRegistry(tmp_path)
    info = build_demo("retail", reg.get("retail", create=True), None)
    assert info["entities"] > 10_000
    store = reg.get("retail")
    assert [e.id for e in store.find("cancel order", type="Intent")] == ["cs:intent:cancel_order"]
    sub = store.neighbors("cs:intent:cancel_order", direction="in", relation_types=["ANSWERS"])
    assert len(sub.entities) > 50
    assert store.find("laptops", type="ProductCategory")
    reg.close()


def test_music_demo_needs_source(tmp_path: Path, shared_data) -> None:
    reg = GraphRegistry(tmp_path)
    with pytest.raises(ConfigurationError):
        build_demo("music", reg.get("music", create=True), None)
    src = shared_data()
    shared_data("kgcn-music-kg")
    info = build_demo("music", reg.get("music"), src)
    assert info["entities"] > 9000
    assert reg.get("music").stats().entity_types["Artist"] == 3846
    reg.close()


def test_registry_names_and_errors(registry: GraphRegistry) -> None:
    assert "finance" in registry.names()
    with pytest.raises(NotFoundError):
        registry.get("absent")
    with pytest.raises(ValidationError):
        registry.get("../etc")


@pytest.fixture(scope="module")
def client(registry: GraphRegistry):
    from apps.graph.router import router

    app = FastAPI()
    app.include_router(router)
    app.state.services = SimpleNamespace(graphs=registry)
    with local_client(app) as c:
        yield c


def test_api_entity_and_404(client: TestClient) -> None:
    r = client.get("/kg/entities/company:AMD", params={"graph": "finance"})
    assert r.status_code == 200 and r.json()["name"] == "Advanced Micro Devices"
    r = client.get("/kg/entities/nope", params={"graph": "finance"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    r = client.get("/kg/entities/company:AMD", params={"graph": "absent"})
    assert r.status_code == 404 and "absent" in r.json()["detail"]
    assert client.get("/kg/entities/x", params={"graph": "../x"}).status_code == 422


def test_api_search(client: TestClient) -> None:
    r = client.get("/kg/search", params={"q": "micro devices", "graph": "finance"})
    assert r.status_code == 200
    assert r.json()["results"][0]["id"] == "company:AMD"
    assert client.get("/kg/search", params={"q": "", "graph": "finance"}).status_code == 422
    assert client.get("/kg/search", params={"q": "a", "graph": "finance", "limit": 1000}).status_code == 422


def test_api_neighbors(client: TestClient) -> None:
    r = client.get(
        "/kg/entities/company:NVDA/neighbors",
        params={"graph": "finance", "hops": 2, "types": "IN_SUB_INDUSTRY,PART_OF", "direction": "out"},
    )
    assert r.status_code == 200
    body = r.json()
    assert {e["id"] for e in body["entities"]} == {
        "company:NVDA",
        "subindustry:semiconductors",
        "sector:information_technology",
    }
    assert max(len(p["relations"]) for p in body["paths"]) == 2
    for bad in ({"hops": 4}, {"hops": 0}, {"limit": 0}, {"direction": "up"}, {"hops": "x"}):
        r = client.get("/kg/entities/company:NVDA/neighbors", params={"graph": "finance", **bad})
        assert r.status_code == 422, bad
    r = client.get("/kg/entities/ghost/neighbors", params={"graph": "finance"})
    assert r.status_code == 404


def test_api_link(client: TestClient) -> None:
    r = client.post("/kg/link", params={"graph": "finance"}, json={"text": "Is $NVDA doing better than AMD?"})
    assert r.status_code == 200
    assert [m["entity_id"] for m in r.json()["mentions"]] == ["company:NVDA", "company:AMD"]
    assert client.post("/kg/link", params={"graph": "finance"}, json={"text": ""}).status_code == 422
    assert client.post("/kg/link", json={}).status_code == 422


def test_cli_build_ingest_query(tmp_path: Path) -> None:
    from apps.cli.kg import app

    runner = CliRunner()
    home = ["--home", str(tmp_path)]
    r = runner.invoke(app, ["build-demo", "finance", *home])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["build-demo", "finance", *home])
    assert "already built" in r.output
    # a graph an earlier recipe built (no marker, or an older version) is updated in place, once
    marker = tmp_path / "graphs" / "finance" / "demo.json"
    marker.write_text('{"graph": "finance", "recipe_version": 1}')
    with GraphRegistry(tmp_path / "graphs") as reg:  # what recipe 1 wrote: Dow Inc. named "Dow"
        store = reg.get("finance")
        store.delete_entity("index:dow_jones")
        old = store.get("company:DOW")
        old.aliases[:] = ["DOW", "Dow"]
        store.upsert([old])
    r = runner.invoke(app, ["build-demo", "finance", *home])
    assert r.exit_code == 0 and "updating it to version 2" in r.output, r.output
    with GraphRegistry(tmp_path / "graphs") as reg:
        assert reg.get("finance").get("company:DOW").aliases == ["DOW"]
        assert reg.get("finance").get("index:dow_jones").aliases[:2] == ["Dow Jones", "Dow"]
    assert runner.invoke(app, ["build-demo", "finance", *home]).output.startswith("graph 'finance' already built")
    marker.unlink()
    assert "updating it" in runner.invoke(app, ["build-demo", "finance", *home]).output
    r = runner.invoke(app, ["link", "Is $NVDA doing better than AMD?", "--graph", "finance", *home])
    assert "company:NVDA" in r.output and "company:AMD" in r.output
    r = runner.invoke(app, ["search", "nvidia", "--graph", "finance", *home])
    assert r.output.startswith("company:NVDA")
    f = tmp_path / "t.txt"
    f.write_text("a\tR\tb\nb\tR\tc\n")
    r = runner.invoke(app, ["ingest", str(f), "--format", "triples", "--graph", "t", *home])
    assert r.exit_code == 0 and "+2 relations" in r.output, r.output
    r = runner.invoke(app, ["stats", "--graph", "t", *home])
    assert '"relations": 2' in r.output
    f.write_text("a\tR\n")
    r = runner.invoke(app, ["ingest", str(f), "--format", "triples", "--graph", "t", *home])
    assert r.exit_code == 1 and "t.txt:1" in r.output
    r = runner.invoke(app, ["stats", "--graph", "missing", *home])
    assert r.exit_code == 1
