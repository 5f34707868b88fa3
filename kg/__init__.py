"""Knowledge-graph layer: graph stores, ingestion, entity linking, demo graphs.

Importing ``kg`` is cheap: backends (ladybug, neo4j), torch and the linker's
libraries are imported only when used.
"""

from kg.factory import open_store
from kg.store import (
    Entity,
    GraphStats,
    GraphStore,
    Path,
    Relation,
    Subgraph,
    UpsertResult,
)
from kg.text import normalize_key

__all__ = [
    "Entity",
    "GraphStats",
    "GraphStore",
    "Path",
    "Relation",
    "Subgraph",
    "UpsertResult",
    "normalize_key",
    "open_store",
]
