"""Request and response models of the ``/kg`` API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kg.linking import Mention
from kg.store import Entity, Relation, Subgraph


class EntityOut(BaseModel):
    """An entity as returned by the API."""

    id: str
    type: str
    name: str
    aliases: list[str] = []
    attributes: dict[str, Any] = {}
    description: str = ""
    source: str = ""

    @classmethod
    def of(cls, e: Entity) -> EntityOut:
        return cls(
            id=e.id,
            type=e.type,
            name=e.name,
            aliases=e.aliases,
            attributes=e.attributes,
            description=e.description,
            source=e.source,
        )


class RelationOut(BaseModel):
    """A relation (edge) ``head -[type]-> tail``."""

    head: str
    type: str
    tail: str
    attributes: dict[str, Any] = {}
    weight: float | None = None
    timestamp: str | None = None
    source: str = ""

    @classmethod
    def of(cls, r: Relation) -> RelationOut:
        return cls(
            head=r.head,
            type=r.type,
            tail=r.tail,
            attributes=r.attributes,
            weight=r.weight,
            timestamp=r.timestamp.isoformat() if r.timestamp else None,
            source=r.source,
        )


class PathOut(BaseModel):
    """A path from the seed: ``nodes[0] -relations[0]- nodes[1] ...``."""

    nodes: list[str]
    relations: list[RelationOut]


class SearchResponse(BaseModel):
    """Entities matching a search query, best first."""

    graph: str
    query: str
    results: list[EntityOut]


class NeighborsResponse(BaseModel):
    """The k-hop neighbourhood of an entity."""

    graph: str
    seed: str
    hops: int
    entities: list[EntityOut]
    relations: list[RelationOut]
    paths: list[PathOut]
    truncated: bool
    provenance: dict[str, Any]

    @classmethod
    def of(cls, graph: str, hops: int, sub: Subgraph) -> NeighborsResponse:
        return cls(
            graph=graph,
            seed=sub.seeds[0],
            hops=hops,
            entities=[EntityOut.of(e) for e in sub.entities.values()],
            relations=[RelationOut.of(r) for r in sub.relations],
            paths=[PathOut(nodes=list(p.nodes), relations=[RelationOut.of(r) for r in p.relations]) for p in sub.paths],
            truncated=sub.truncated,
            provenance=sub.provenance,
        )


class LinkRequest(BaseModel):
    """Text to link against a graph's entities."""

    model_config = {"extra": "forbid"}

    text: str = Field(min_length=1, max_length=20_000)
    min_score: float = Field(default=0.6, ge=0.0, le=1.0)


class MentionOut(BaseModel):
    """A linked span: ``text[start:end] == surface``."""

    start: int
    end: int
    surface: str
    entity_id: str
    entity_type: str
    name: str
    score: float
    method: str
    candidates: list[tuple[str, float]] = []

    @classmethod
    def of(cls, m: Mention) -> MentionOut:
        return cls(
            start=m.start,
            end=m.end,
            surface=m.surface,
            entity_id=m.entity_id,
            entity_type=m.entity_type,
            name=m.name,
            score=m.score,
            method=m.method,
            candidates=list(m.candidates),
        )


class LinkResponse(BaseModel):
    """Mentions found in the text, by position."""

    graph: str
    mentions: list[MentionOut]


class SimilarEntityOut(BaseModel):
    """An entity close to the query entity in embedding space."""

    id: str
    score: float = Field(description="cosine similarity of the entity vectors")
    name: str = ""
    type: str = ""


class SimilarResponse(BaseModel):
    """Nearest entities by trained graph embeddings."""

    graph: str
    entity_id: str
    model: str
    embeddings: str = Field(description="embedding folder name: <model>-<graph fingerprint>")
    results: list[SimilarEntityOut]
