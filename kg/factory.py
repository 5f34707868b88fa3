"""Open a graph store by backend name: the one module that knows every backend.

It sits above the ``GraphStore`` protocol (``kg/store.py``) and the backends that implement it,
so the protocol never imports its implementations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kg.store import GraphStore
from kgnlp.errors import ConfigurationError

__all__ = ["open_store"]


def open_store(
    backend: str = "ladybug",
    path: Path | None = None,
    *,
    graph: str = "default",
    options: Mapping[str, Any] | None = None,
) -> GraphStore:
    """Open a graph store by backend name.

    Args:
        backend: ``"ladybug"`` (embedded, needs ``path``) or ``"neo4j"``.
        path: Database directory for the embedded backend.
        graph: Graph name (the Neo4j backend namespaces nodes by it).
        options: Backend options (``read_only`` for ladybug; ``uri``, ``user``,
            ``password``, ``database`` for Neo4j, default from ``KGNLP_NEO4J_*``).

    Returns:
        An open store; close it with ``close()`` or use it as a context manager.
    """
    opts = dict(options or {})
    if backend == "ladybug":
        if path is None:
            raise ConfigurationError("backend 'ladybug' needs a database path, got None")
        from kg.ladybug_store import LadybugStore

        return LadybugStore.open(path, read_only=bool(opts.get("read_only", False)))
    if backend == "neo4j":
        from kg.neo4j_store import Neo4jConfig, Neo4jStore

        cfg = Neo4jConfig.from_env().replace(**{k: v for k, v in opts.items() if v is not None})
        return Neo4jStore.open(cfg, graph=graph)
    raise ConfigurationError(f"graph backend must be 'ladybug' or 'neo4j', got {backend!r}")
