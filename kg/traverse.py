"""Breadth-first k-hop expansion shared by the graph backends.

A backend supplies ``fetch(frontier, direction, relation_types, cap)`` returning
the relations leaving (``out``) or entering (``in``) the frontier entities; this
module walks level by level, keeps the first (shortest) path to every entity,
and stops at ``limit`` neighbours.
"""

from __future__ import annotations

from collections.abc import Callable

from kg.store import Entity, Path, Relation, Subgraph

__all__ = ["Fetch", "expand"]

Fetch = Callable[[list[str], str, list[str], int], list[Relation]]


def expand(
    seed: Entity,
    *,
    hops: int,
    direction: str,
    relation_types: list[str],
    limit: int,
    fetch: Fetch,
    get_many: Callable[[list[str]], dict[str, Entity]],
    provenance: dict[str, object],
) -> Subgraph:
    """Expand ``seed`` breadth-first and assemble the subgraph.

    Args:
        seed: The seed entity.
        hops: Number of levels (validated by the caller).
        direction: ``out``, ``in`` or ``both``.
        relation_types: Relation types to follow (all when empty).
        limit: Maximum number of neighbour entities.
        fetch: Backend query for one level (see module docstring).
        get_many: Backend lookup of entities by id.
        provenance: Backend description merged into ``Subgraph.provenance``.

    Returns:
        Seed + neighbours, the edges walked between them, one shortest path
        per neighbour; ``truncated`` when ``limit`` or a per-level cap was hit.
    """
    parent: dict[str, tuple[str, Relation] | None] = {seed.id: None}
    edges: dict[tuple[str, str, str], Relation] = {}
    frontier = [seed.id]
    truncated = False
    cap = 2 * limit + 100  # rows per level query; beyond it the answer is marked truncated
    for _ in range(hops):
        if not frontier or truncated:
            break
        found: list[tuple[str, Relation, str]] = []
        for d in ("out", "in") if direction == "both" else (direction,):
            rels = fetch(frontier, d, relation_types, cap)
            if len(rels) >= cap:
                truncated = True
            for r in rels:
                found.append((r.head, r, r.tail) if d == "out" else (r.tail, r, r.head))
        nxt: list[str] = []
        for a, rel, b in found:
            if b not in parent:
                if len(parent) - 1 >= limit:
                    truncated = True
                    continue
                parent[b] = (a, rel)
                nxt.append(b)
            edges[rel.key] = rel
        frontier = nxt
    entities = get_many([i for i in parent if i != seed.id])
    entities = {seed.id: seed, **entities}
    rels = [r for r in edges.values() if r.head in parent and r.tail in parent]
    paths = []
    for node in parent:
        if node == seed.id:
            continue
        nodes, prels, cur = [node], [], node
        while (p := parent[cur]) is not None:
            cur, rel = p
            prels.append(rel)
            nodes.append(cur)
        paths.append(Path(tuple(reversed(nodes)), tuple(reversed(prels))))
    sources = {r.source for r in rels if r.source} | {e.source for e in entities.values() if e.source}
    return Subgraph(
        seeds=[seed.id],
        entities=entities,
        relations=rels,
        paths=paths,
        provenance={**provenance, "sources": sorted(sources)},
        truncated=truncated,
    )
