"""The Neo4j side of ``GraphRegistry`` without a server (issue #19): one shared driver, graph names
checked against the database, schema DDL only when a graph is created.

A read of any graph name once opened a new driver and ran the schema DDL, so a caller with read
access could open drivers (connection pools) without limit. The driver here is the real
``neo4j`` class (it connects lazily) or a recording fake behind ``neo4j.GraphDatabase.driver``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import neo4j
import pytest

from kg.neo4j_store import Neo4jStore
from kg.registry import GraphRegistry
from kgnlp.errors import NotFoundError

EXISTING = ["finance", "retail"]
URI = "bolt://127.0.0.1:1"  # nothing listens there: any connection attempt would fail the test


class _Result(list):  # type: ignore[type-arg]
    def consume(self) -> None:
        return None


class FakeDriver:
    """Records every query; the catalog read answers ``EXISTING``."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.closed = False

    def session(self, database: str | None = None) -> FakeDriver:
        return self

    def __enter__(self) -> FakeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute_read(self, work: Any) -> Any:
        return work(self)

    execute_write = execute_read

    def run(self, query: str, params: Any = None, **kw: Any) -> _Result:
        self.queries.append(query)
        return _Result({"g": g} for g in EXISTING) if "DISTINCT n.graph" in query else _Result()

    def close(self) -> None:
        self.closed = True

    def verify_connectivity(self) -> None:
        return None

    def ddl(self) -> list[str]:
        return [q for q in self.queries if q.startswith(("CREATE CONSTRAINT", "CREATE INDEX"))]


@pytest.fixture
def drivers(monkeypatch: pytest.MonkeyPatch) -> list[FakeDriver]:
    made: list[FakeDriver] = []

    def driver(uri: str, auth: Any = None, **kw: Any) -> FakeDriver:
        made.append(FakeDriver())
        return made[-1]

    monkeypatch.setattr(neo4j.GraphDatabase, "driver", driver)
    return made


def registry(tmp_path: Path) -> GraphRegistry:
    return GraphRegistry(tmp_path, backend="neo4j", neo4j={"uri": URI, "password": "x"})


def test_reads_of_unknown_graphs_open_no_driver_and_run_no_ddl(tmp_path: Path, drivers: list[FakeDriver]) -> None:
    reg = registry(tmp_path)
    for i in range(50):
        with pytest.raises(NotFoundError, match="not found in Neo4j"):
            reg.get(f"probe-{i}")
        with pytest.raises(NotFoundError):
            reg.linker(f"other-{i}")
    assert len(drivers) == 1  # the registry's one shared driver (it answered the name checks)
    assert drivers[0].ddl() == []
    assert reg.names() == EXISTING and len(drivers) == 1
    reg.close()
    assert drivers[0].closed


def test_existing_graphs_share_one_driver_and_reads_run_no_ddl(tmp_path: Path, drivers: list[FakeDriver]) -> None:
    with registry(tmp_path) as reg:
        a, b = reg.get("finance"), reg.get("retail")
        assert reg.get("finance") is a
        assert isinstance(a, Neo4jStore) and isinstance(b, Neo4jStore)
        assert a._driver is b._driver is drivers[0] and len(drivers) == 1
        a.find("apple"), b.stats()
        assert drivers[0].ddl() == []
        a.close()  # a registry's store leaves the shared driver open
        assert not drivers[0].closed


def test_schema_is_set_up_once_when_a_graph_is_created(tmp_path: Path, drivers: list[FakeDriver]) -> None:
    with registry(tmp_path) as reg:
        reg.get("new-graph", create=True)
        reg.get("another", create=True)
        assert len(drivers) == 1
        assert len(drivers[0].ddl()) == 4  # the constraint and three indexes, once


def test_real_driver_is_shared_and_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the real ``neo4j`` driver class: one driver for every graph, no connection made."""
    real = neo4j.GraphDatabase.driver
    made: list[Any] = []

    def driver(uri: str, **kw: Any) -> Any:
        made.append(real(uri, **kw))
        return made[-1]

    monkeypatch.setattr(neo4j.GraphDatabase, "driver", driver)
    monkeypatch.setattr(Neo4jStore, "graph_names", lambda self: list(EXISTING))  # the catalog read
    monkeypatch.setattr(Neo4jStore, "ensure_schema", lambda self: pytest.fail("schema DDL on a read"))
    with registry(tmp_path) as reg:
        for i in range(20):
            with pytest.raises(NotFoundError):
                reg.get(f"probe-{i}")
        a, b = reg.get("finance"), reg.get("retail")
        assert isinstance(made[0], neo4j.Driver) and len(made) == 1
        assert a._driver is b._driver is made[0]  # type: ignore[attr-defined]
