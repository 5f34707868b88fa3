"""Graph types and the ``GraphStore`` protocol every backend implements.

Entities are identified by a string id; a relation is identified by its
``(head, type, tail)`` triple, so re-ingesting the same facts adds nothing.
Relation types are free strings (stored as a property), so any vocabulary works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from kgnlp.errors import ValidationError

__all__ = [
    "DEFAULT_ENTITY_TYPE",
    "Direction",
    "Entity",
    "GraphStats",
    "GraphStore",
    "Path",
    "ProgressFn",
    "Relation",
    "Subgraph",
    "UpsertResult",
    "check_entity",
    "check_neighbor_args",
    "check_relation",
]

DEFAULT_ENTITY_TYPE = "Entity"
MAX_HOPS = 3
MAX_NEIGHBOR_LIMIT = 10_000

Direction = Literal["out", "in", "both"]
ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(stage, done, total)`` while a write runs."""


@dataclass(slots=True)
class Entity:
    """A node of the graph.

    ``attributes`` is the attribute graph of the entity: literal-valued
    properties (JSON-serialisable) that are not worth a node of their own.
    """

    id: str
    type: str = DEFAULT_ENTITY_TYPE
    name: str = ""
    aliases: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""

    def display_name(self) -> str:
        """Return ``name`` or, when empty, the id."""
        return self.name or self.id


@dataclass(slots=True)
class Relation:
    """A directed, typed edge ``head -[type]-> tail`` with provenance."""

    head: str
    type: str
    tail: str
    attributes: dict[str, Any] = field(default_factory=dict)
    weight: float | None = None
    timestamp: datetime | None = None
    source: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity of the relation: ``(head, type, tail)``."""
        return (self.head, self.type, self.tail)


@dataclass(frozen=True, slots=True)
class Path:
    """A walk from a seed entity: ``nodes[0] -rels[0]- nodes[1] ...``."""

    nodes: tuple[str, ...]
    relations: tuple[Relation, ...]

    @property
    def hops(self) -> int:
        """Number of edges on the path."""
        return len(self.relations)


@dataclass(slots=True)
class Subgraph:
    """Entities, relations and paths around seed entities, with provenance.

    ``provenance`` holds the distinct ``source`` values of the facts included,
    plus ``backend``/``graph`` describing where the answer came from.
    """

    seeds: list[str]
    entities: dict[str, Entity] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False

    def triples(self) -> list[tuple[str, str, str]]:
        """Return the relations as ``(head, type, tail)`` triples."""
        return [r.key for r in self.relations]


@dataclass(frozen=True, slots=True)
class GraphStats:
    """Counts describing a store."""

    entities: int
    relations: int
    entity_types: dict[str, int]
    relation_types: dict[str, int]


@dataclass(slots=True)
class UpsertResult:
    """What an upsert changed (all zeros when re-ingesting identical data)."""

    entities_added: int = 0
    entities_updated: int = 0
    relations_added: int = 0
    relations_updated: int = 0

    @property
    def changed(self) -> int:
        """Total number of created or modified records."""
        return self.entities_added + self.entities_updated + self.relations_added + self.relations_updated


@runtime_checkable
class GraphStore(Protocol):
    """The contract every graph backend satisfies (see tests/kg/test_contract.py)."""

    backend: str

    def upsert(
        self,
        entities: Iterable[Entity] = (),
        relations: Iterable[Relation] = (),
        *,
        create_missing: bool = False,
        progress: ProgressFn | None = None,
        validate: bool = True,
    ) -> UpsertResult:
        """Insert or replace entities and relations atomically (all or nothing)."""
        ...

    def upsert_triples(
        self,
        triples: Sequence[tuple[str, str, str]],
        *,
        source: str = "",
        create_missing: bool = True,
        progress: ProgressFn | None = None,
        assume_unique: bool = False,
    ) -> UpsertResult:
        """Bulk-add plain ``(head, type, tail)`` triples atomically; existing ones are kept."""
        ...

    def get(self, entity_id: str) -> Entity:
        """Return one entity; raise ``NotFoundError`` when absent."""
        ...

    def get_many(self, entity_ids: Iterable[str]) -> dict[str, Entity]:
        """Return the entities that exist among ``entity_ids``."""
        ...

    def find(
        self,
        query: str | None = None,
        *,
        type: str | None = None,
        mode: Literal["exact", "contains"] = "exact",
        limit: int = 20,
    ) -> list[Entity]:
        """Find entities by name or alias (case/accent-insensitive) and/or type."""
        ...

    def neighbors(
        self,
        entity_id: str,
        *,
        hops: int = 1,
        relation_types: Iterable[str] | None = None,
        direction: Direction = "both",
        limit: int = 100,
    ) -> Subgraph:
        """Return the 1-3 hop neighbourhood of an entity with shortest paths."""
        ...

    def delete_entity(self, entity_id: str) -> None:
        """Delete an entity and its edges; raise ``NotFoundError`` when absent."""
        ...

    def delete_relations(self, heads: Iterable[str], type: str) -> int:
        """Delete the ``type`` edges leaving ``heads``; return how many were deleted."""
        ...

    def stats(self) -> GraphStats:
        """Return entity/relation counts by type."""
        ...

    def iter_entities(self, batch_size: int = 10_000) -> Iterator[Entity]:
        """Yield every entity (order by id)."""
        ...

    def iter_triples(self, batch_size: int = 50_000) -> Iterator[tuple[str, str, str]]:
        """Yield every relation as ``(head, type, tail)``."""
        ...

    def iter_relations(self, batch_size: int = 50_000) -> Iterator[Relation]:
        """Yield every relation with its properties."""
        ...

    def close(self) -> None:
        """Release the database handle (idempotent)."""
        ...


def check_entity(e: Entity, where: str = "") -> None:
    """Raise ``ValidationError`` when an entity is malformed.

    Args:
        e: The entity.
        where: Location prefix for the message, e.g. ``"file.csv:12: "``.
    """
    if not isinstance(e.id, str) or not e.id.strip():
        raise ValidationError(f"{where}entity id must be a non-empty string, got {e.id!r}")
    if not isinstance(e.type, str) or not e.type.strip():
        raise ValidationError(f"{where}entity {e.id!r}: type must be non-empty, got {e.type!r}")
    if not isinstance(e.aliases, list) or not all(isinstance(a, str) for a in e.aliases):
        raise ValidationError(f"{where}entity {e.id!r}: aliases must be a list of strings")
    if not isinstance(e.attributes, dict):
        raise ValidationError(f"{where}entity {e.id!r}: attributes must be a mapping")


def check_relation(r: Relation, where: str = "") -> None:
    """Raise ``ValidationError`` when a relation is malformed.

    Args:
        r: The relation.
        where: Location prefix for the message.
    """
    for name in ("head", "type", "tail"):
        v = getattr(r, name)
        if not isinstance(v, str) or not v.strip():
            raise ValidationError(f"{where}relation {name} must be a non-empty string, got {v!r}")
    if r.weight is not None and (not isinstance(r.weight, (int, float)) or not math.isfinite(r.weight)):
        raise ValidationError(f"{where}relation weight must be a finite number, got {r.weight!r}")
    if r.timestamp is not None and not isinstance(r.timestamp, datetime):
        raise ValidationError(f"{where}relation timestamp must be a datetime, got {r.timestamp!r}")
    if not isinstance(r.attributes, dict):
        raise ValidationError(f"{where}relation attributes must be a mapping")


def check_neighbor_args(hops: int, direction: str, limit: int) -> None:
    """Validate ``neighbors`` arguments (shared by the backends).

    Args:
        hops: Number of hops (1-3).
        direction: ``out``, ``in`` or ``both``.
        limit: Maximum number of neighbour entities (1-10000).
    """
    if not isinstance(hops, int) or not 1 <= hops <= MAX_HOPS:
        raise ValidationError(f"hops must be between 1 and {MAX_HOPS}, got {hops!r}")
    if direction not in ("out", "in", "both"):
        raise ValidationError(f"direction must be 'out', 'in' or 'both', got {direction!r}")
    if not isinstance(limit, int) or not 1 <= limit <= MAX_NEIGHBOR_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_NEIGHBOR_LIMIT}, got {limit!r}")
