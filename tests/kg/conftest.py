"""Fixtures for the knowledge-graph tests: store backends and the shared data folder."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kg.store import Entity, GraphStore, Relation

SHARED_DATA = Path(
    os.environ.get("KGNLP_SHARED_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)


def _shared_data(*parts: str) -> Path:
    """Return a path under the shared data folder, skipping the test when absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} (set KGNLP_SHARED_DATA)")
    return p


@pytest.fixture
def shared_data() -> object:
    """A function returning a path under the shared data folder (skips when absent)."""
    return _shared_data


BACKENDS = ["ladybug", "neo4j"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GraphStore]:
    """An empty store of each backend (Neo4j only when KGNLP_NEO4J_URI is set)."""
    if request.param == "ladybug":
        from kg.ladybug_store import LadybugStore

        s: GraphStore = LadybugStore.open(tmp_path / "graph")
        yield s
        s.close()
    else:
        if not os.environ.get("KGNLP_NEO4J_URI"):
            pytest.skip("Neo4j backend: set KGNLP_NEO4J_URI (+ KGNLP_NEO4J_USER/PASSWORD) to run")
        from kg.neo4j_store import Neo4jConfig, Neo4jStore

        ns = Neo4jStore.open(Neo4jConfig.from_env(), graph=f"test-{uuid.uuid4().hex[:12]}")
        yield ns
        ns.drop_graph()
        ns.close()


def make_small_graph() -> tuple[list[Entity], list[Relation]]:
    """A tiny company graph used by several tests."""
    ents = [
        Entity(
            "c:nvda",
            "Company",
            "NVIDIA",
            aliases=["NVDA", "Nvidia Corp."],
            attributes={"ticker": "NVDA", "founded": 1993},
            description="GPUs",
            source="t",
        ),
        Entity(
            "c:amd",
            "Company",
            "Advanced Micro Devices",
            aliases=["AMD"],
            attributes={"ticker": "AMD"},
            description="CPUs, GPUs",
            source="t",
        ),
        Entity(
            "c:socgen",
            "Company",
            "Société Générale",
            aliases=["SocGen"],
            description='bank, "quoted"\nsecond line',
            source="t",
        ),
        Entity("s:semis", "SubIndustry", "Semiconductors", source="t"),
        Entity("s:it", "Sector", "Information Technology", source="t"),
        Entity("city:sc", "City", "Santa Clara", source="t"),
    ]
    rels = [
        Relation("c:nvda", "IN_SUB_INDUSTRY", "s:semis", source="t"),
        Relation("c:amd", "IN_SUB_INDUSTRY", "s:semis", source="t"),
        Relation("s:semis", "PART_OF", "s:it", source="t"),
        Relation("c:nvda", "PEER_OF", "c:amd", weight=0.5, source="t"),
        Relation("c:nvda", "HEADQUARTERED_IN", "city:sc", source="t"),
        Relation("c:amd", "HEADQUARTERED_IN", "city:sc", source="t"),
    ]
    return ents, rels


@pytest.fixture
def small_graph() -> tuple[list[Entity], list[Relation]]:
    """Fresh copies of the tiny company graph."""
    return make_small_graph()


@pytest.fixture
def loaded(store: GraphStore) -> GraphStore:
    """``store`` holding the small graph."""
    ents, rels = make_small_graph()
    store.upsert(ents, rels)
    return store


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: long-running test")
    config.addinivalue_line("markers", "neo4j: needs a Neo4j server (KGNLP_NEO4J_URI)")
