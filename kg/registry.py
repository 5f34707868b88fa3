"""Named graphs opened lazily, with one cached entity linker per graph.

The API keeps one ``GraphRegistry`` in ``app.state.graphs``; the CLI builds one
per command. For the embedded backend each graph is a directory
``<root>/<name>/`` (ladybug allows one read-write process per database, so API
workers that share a graph with a writer open it ``read_only``; a second replica on the same home
falls back to read-only with ``share_writer``). For Neo4j the
registry holds one driver (a connection pool) that every graph's store shares; a graph
name is served only when the database holds it, and the schema DDL runs when a graph is
created (``get(name, create=True)``), not on reads.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any, Self

from kg.store import GraphStore
from kgnlp.errors import ConfigurationError, NotFoundError, StoreError, ValidationError

__all__ = ["GRAPH_NAME", "GraphRegistry"]

log = logging.getLogger("kgnlp.kg")
GRAPH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class GraphRegistry:
    """Open graph stores by name, lazily, and cache a ``Linker`` per graph.

    Args:
        root: Folder holding one sub-folder per embedded graph.
        backend: ``"ladybug"`` or ``"neo4j"``.
        read_only: Open embedded graphs read-only (they must exist).
        share_writer: When another process already holds an embedded graph for writing (a second
            replica on the same ``KGNLP_HOME``), open it read-only instead of failing: this
            process then serves reads and answers writes with a ``ConflictError``.
        neo4j: Options for the Neo4j backend (``uri``, ``user``, ``password``,
            ``database``); defaults come from ``KGNLP_NEO4J_*``.
        linker_options: Keyword arguments for every ``Linker`` (e.g. ``embedder``).
    """

    def __init__(
        self,
        root: Path,
        *,
        backend: str = "ladybug",
        read_only: bool = False,
        share_writer: bool = False,
        neo4j: dict[str, Any] | None = None,
        linker_options: dict[str, Any] | None = None,
    ) -> None:
        if backend not in ("ladybug", "neo4j"):
            raise ConfigurationError(f"graph backend must be 'ladybug' or 'neo4j', got {backend!r}")
        self.root = Path(root)
        self.backend = backend
        self.read_only = read_only
        self.share_writer = share_writer
        self.neo4j = dict(neo4j or {})
        self.linker_options = dict(linker_options or {})
        self._stores: dict[str, GraphStore] = {}
        self._linkers: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._driver: Any = None  # the shared neo4j driver, created on first use
        self._schema_ready = False

    @staticmethod
    def check_name(name: str) -> str:
        """Return ``name`` if it is a valid graph name, else raise ``ValidationError``."""
        if not isinstance(name, str) or not GRAPH_NAME.match(name):
            raise ValidationError(
                f"graph name must match {GRAPH_NAME.pattern} (letters, digits, '_', '-'), got {name!r}"
            )
        return name

    def path(self, name: str) -> Path:
        """Directory of an embedded graph."""
        return self.root / self.check_name(name)

    def exists(self, name: str) -> bool:
        """Whether the graph exists (embedded: its database file is present; Neo4j: it has nodes)."""
        if self.backend == "neo4j":
            return name in self._stores or name in self._neo4j_catalog().graph_names()
        from kg.ladybug_store import DB_FILENAME

        return (self.path(name) / DB_FILENAME).exists()

    def names(self) -> list[str]:
        """Names of the graphs available (existing on disk / in Neo4j, or open)."""
        found: set[str] = set(self._stores)
        if self.backend == "ladybug":
            from kg.ladybug_store import DB_FILENAME

            if self.root.is_dir():
                found.update(
                    p.name for p in self.root.iterdir() if (p / DB_FILENAME).exists() and GRAPH_NAME.match(p.name)
                )
        else:
            found.update(self._neo4j_catalog().graph_names())
        return sorted(found)

    def _neo4j_store(self, name: str) -> Any:
        """A store of graph ``name`` on the shared driver (created lazily: no connection, no DDL)."""
        from kg.neo4j_store import Neo4jConfig, Neo4jStore

        cfg = Neo4jConfig.from_env().replace(**self.neo4j)
        with self._lock:
            if self._driver is None:
                self._driver = Neo4jStore.connect(cfg)
            return Neo4jStore(cfg, graph=name, driver=self._driver)

    def _neo4j_catalog(self) -> Any:
        """A store on the shared driver for database-wide reads (the graph names)."""
        return self._neo4j_store("default")

    def get(self, name: str, *, create: bool = False) -> GraphStore:
        """Return the open store of a graph, opening it on first use.

        Args:
            name: Graph name.
            create: Create a graph that does not exist yet (Neo4j: and set up the schema).

        Returns:
            The store (owned by the registry: do not close it).
        """
        self.check_name(name)
        if self.backend == "neo4j" and not create and name not in self._stores and not self.exists(name):
            # an unknown name costs one read on the shared driver (outside the lock): no driver, no DDL
            raise NotFoundError(f"graph {name!r} not found in Neo4j (build it with: kgnlp kg build-demo {name})")
        with self._lock:
            store = self._stores.get(name)
            if store is not None:
                return store
            if self.backend == "ladybug":
                if not create and not self.exists(name):
                    raise NotFoundError(
                        f"graph {name!r} not found under {self.root} (build it with: kgnlp kg build-demo {name})"
                    )
                from kg.ladybug_store import LadybugStore

                try:
                    store = LadybugStore.open(self.path(name), read_only=self.read_only)
                except StoreError as e:
                    if not (self.share_writer and "lock" in str(e).lower()):
                        raise
                    log.warning("graph %r is held for writing by another process: opened read-only (%s)", name, e)
                    store = LadybugStore.open(self.path(name), read_only=True)
            else:
                store = self._neo4j_store(name)
                if create and not self._schema_ready:
                    store.ensure_schema()
                    self._schema_ready = True
            self._stores[name] = store
            return store

    def linker(self, name: str) -> Any:
        """Return the cached ``Linker`` over a graph's entities (built on first use)."""
        store = self.get(name)
        with self._lock:
            lk = self._linkers.get(name)
            if lk is None:
                from kg.linking import Linker

                lk = Linker.from_store(store, **self.linker_options)
                self._linkers[name] = lk
            return lk

    def refresh(self, name: str) -> None:
        """Forget the cached linker of a graph (call after writing to it)."""
        with self._lock:
            self._linkers.pop(name, None)

    def close(self) -> None:
        """Close every open store and the shared driver (idempotent)."""
        with self._lock:
            for s in self._stores.values():
                s.close()
            self._stores.clear()
            self._linkers.clear()
            if self._driver is not None:
                self._driver.close()
                self._driver = None
                self._schema_ready = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
