"""Routes of the ``/kg`` API. The graph registry lives in ``request.app.state.services.graphs``."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from apps.graph.schemas import (
    EntityOut,
    LinkRequest,
    LinkResponse,
    MentionOut,
    NeighborsResponse,
    SearchResponse,
    SimilarEntityOut,
    SimilarResponse,
)
from kg.registry import GRAPH_NAME, GraphRegistry
from kg.store import GraphStore
from kgnlp.errors import NotFoundError, StoreError, ValidationError

router = APIRouter(prefix="/kg", tags=["kg"])

GraphName = Annotated[str, Query(description="graph name", pattern=GRAPH_NAME.pattern, max_length=64)]


def _registry(request: Request) -> GraphRegistry:
    services = getattr(request.app.state, "services", None)
    reg = getattr(services, "graphs", None)
    if reg is None:
        raise HTTPException(status_code=503, detail="knowledge graphs are not configured")
    return reg


def _store(request: Request, graph: str) -> GraphStore:
    try:
        return _registry(request).get(graph)
    except NotFoundError as e:
        raise HTTPException(status_code=404, detail=f"graph {graph!r} not found") from e
    except ValidationError as e:
        raise HTTPException(status_code=422, detail=str(e)) from e
    except StoreError as e:
        raise HTTPException(status_code=503, detail=f"graph {graph!r} unavailable: {e}") from e


@router.get("/entities/{entity_id}", response_model=EntityOut)
def get_entity(request: Request, entity_id: str, graph: GraphName = "retail") -> EntityOut:
    """Return one entity by id."""
    store = _store(request, graph)
    try:
        return EntityOut.of(store.get(entity_id))
    except NotFoundError as e:
        raise HTTPException(status_code=404, detail=f"entity {entity_id!r} not found in graph {graph!r}") from e


@router.get("/search", response_model=SearchResponse)
def search(
    request: Request,
    q: Annotated[str, Query(min_length=1, max_length=200, description="name or alias")],
    graph: GraphName = "retail",
    type: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> SearchResponse:
    """Search entities by name or alias (case- and accent-insensitive substring, exact first)."""
    store = _store(request, graph)
    hits = store.find(q, type=type, mode="contains", limit=limit)
    return SearchResponse(graph=graph, query=q, results=[EntityOut.of(e) for e in hits])


@router.get("/entities/{entity_id}/neighbors", response_model=NeighborsResponse)
def neighbors(
    request: Request,
    entity_id: str,
    graph: GraphName = "retail",
    hops: Annotated[int, Query(ge=1, le=3)] = 1,
    types: Annotated[list[str] | None, Query(max_length=50, description="relation types to follow")] = None,
    direction: Literal["out", "in", "both"] = "both",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> NeighborsResponse:
    """Return the 1-3 hop neighbourhood of an entity, with a path to every neighbour."""
    store = _store(request, graph)
    rel_types = [t for x in types or [] for t in x.split(",") if t]
    try:
        sub = store.neighbors(entity_id, hops=hops, relation_types=rel_types, direction=direction, limit=limit)
    except NotFoundError as e:
        raise HTTPException(status_code=404, detail=f"entity {entity_id!r} not found in graph {graph!r}") from e
    except ValidationError as e:
        raise HTTPException(status_code=422, detail=str(e)) from e
    return NeighborsResponse.of(graph, hops, sub)


@router.post("/link", response_model=LinkResponse)
def link(request: Request, body: LinkRequest, graph: GraphName = "retail") -> LinkResponse:
    """Find mentions of the graph's entities in a text."""
    _store(request, graph)
    linker = _registry(request).linker(graph)
    mentions = linker.link(body.text, min_score=body.min_score)
    return LinkResponse(graph=graph, mentions=[MentionOut.of(m) for m in mentions])


@router.get("/entities/{entity_id}/similar", response_model=SimilarResponse)
def similar(
    request: Request,
    entity_id: str,
    graph: GraphName = "retail",
    k: Annotated[int, Query(ge=1, le=100, description="number of neighbours")] = 10,
) -> SimilarResponse:
    """Return the entities whose trained embeddings are closest (cosine) to this entity's."""
    from kg.embeddings.artifacts import load_cached

    store = _store(request, graph)
    try:
        art = load_cached(_registry(request).path(graph))
    except NotFoundError as e:
        raise HTTPException(
            status_code=404,
            detail=f"graph {graph!r} has no entity embeddings yet: run `kgnlp kg train-embeddings --graph {graph}`",
        ) from e
    except StoreError as e:
        raise HTTPException(status_code=503, detail=f"embeddings of graph {graph!r} unavailable: {e}") from e
    if entity_id not in art:
        try:
            store.get(entity_id)
        except NotFoundError as e:
            raise HTTPException(status_code=404, detail=f"entity {entity_id!r} not found in graph {graph!r}") from e
        raise HTTPException(
            status_code=404,
            detail=f"entity {entity_id!r} was added after training: run `kgnlp kg train-embeddings --graph {graph} "
            "--fold-in` (or retrain)",
        )
    hits = art.similar(entity_id, k)
    ents = store.get_many([h.id for h in hits])
    return SimilarResponse(
        graph=graph,
        entity_id=entity_id,
        model=art.model_name,
        embeddings=art.path.name if art.path else "",
        results=[
            SimilarEntityOut(
                id=h.id,
                score=h.score,
                name=ents[h.id].display_name() if h.id in ents else "",
                type=ents[h.id].type if h.id in ents else "",
            )
            for h in hits
        ],
    )
