"""A recommendation catalogue kept in a graph store: items, their attributes and relations as one KG.

Items are entities of type ``Item`` (``attributes``: ``tags`` and an optional ``text``); every other
entity (genre, tag, category, brand …) is a plain node and every KG fact an edge, so ``/kg/*``,
the KGE/R-GCN module and the recommender see one graph. Each catalogue has its own graph,
``recommend-<catalogue>``, on the configured backend (ladybug embedded, Neo4j at scale).
Interactions live in SQL (:mod:`apps.recommend.interactions`), not in the graph.

:func:`write_catalogue` puts a :class:`Catalogue` into a store (one atomic upsert; re-writing the
same catalogue changes nothing); :func:`read_catalogue` builds the :class:`Catalogue` training and
serving use from the store and an interaction log (items in id order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from apps.recommend.data import Catalogue, Interactions
from apps.recommend.interactions import InteractionRow
from kg.store import Entity, GraphStore, Relation, UpsertResult
from kgnlp.errors import NotFoundError

__all__ = ["ITEM_TYPE", "catalogue_rows", "catalogue_store", "entity_type", "graph_name", "item_entity",
           "read_catalogue", "write_catalogue"]  # fmt: skip

ITEM_TYPE = "Item"
_DAY = 86400.0


def graph_name(catalogue: str) -> str:
    """The graph holding a catalogue: ``recommend-<catalogue>``."""
    return f"recommend-{catalogue}"


def catalogue_store(graphs: Any, catalogue: str, create: bool = False) -> GraphStore:
    """The catalogue's graph from a ``GraphRegistry`` (owned by the registry: do not close it).

    Raises:
        NotFoundError: the graph does not exist and ``create`` is False.
    """
    return graphs.get(graph_name(catalogue), create=create)


def item_entity(item_id: str, name: str, tags: Sequence[str] = (), text: str = "",
                attributes: dict[str, Any] | None = None, source: str = "") -> Entity:  # fmt: skip
    """The graph node of one item."""
    attrs: dict[str, Any] = {**(attributes or {}), "tags": list(tags)}
    if text:
        attrs["text"] = text
    return Entity(id=item_id, type=ITEM_TYPE, name=name, attributes=attrs, source=source)


def entity_type(entity_id: str) -> str:
    """``genre:jazz`` → ``genre``; ids without a prefix are plain ``Entity`` nodes."""
    prefix, sep, _ = entity_id.partition(":")
    return prefix if sep and prefix.isidentifier() else "Entity"


def write_catalogue(store: GraphStore, catalogue: Catalogue, source: str = "") -> UpsertResult:
    """Upsert every item, entity and KG fact of ``catalogue`` into ``store`` (atomically)."""
    c = catalogue
    n = c.n_items
    gid = [*c.item_ids, *c.entity_ids[n:]]
    entities = [item_entity(c.item_ids[i], c.item_names[i], c.item_tags[i], c.item_texts[i] if c.item_texts else "",
                            source=source) for i in range(n)]  # fmt: skip
    entities += [Entity(id=gid[j], type=entity_type(gid[j]), name=c.entity_names[j], source=source)
                 for j in range(n, c.n_entities)]  # fmt: skip
    relations = [Relation(gid[h], c.relations[r], gid[t], source=source) for h, r, t in c.triples.tolist()]
    return store.upsert(entities, relations, create_missing=False)


def catalogue_rows(catalogue: Catalogue) -> list[InteractionRow]:
    """A catalogue's interactions as log rows (times in unix seconds)."""
    c, inter = catalogue, catalogue.interactions
    return [InteractionRow(c.user_ids[u], c.item_ids[i], float(w), float(t) * _DAY)
            for u, i, w, t in zip(inter.users.tolist(), inter.items.tolist(), inter.weights.tolist(),
                                  inter.ts.tolist(), strict=True)]  # fmt: skip


def read_catalogue(store: GraphStore, name: str, rows: Iterable[InteractionRow] = (),
                   meta: dict[str, Any] | None = None) -> Catalogue:  # fmt: skip
    """The catalogue in ``store``: its items (id order), other entities, facts and ``rows``.

    Events of items no longer in the graph are dropped (a deleted item); users are numbered in id order.

    Raises:
        NotFoundError: the graph holds no item.
    """
    items: list[Entity] = []
    others: list[Entity] = []
    for e in store.iter_entities():
        (items if e.type == ITEM_TYPE else others).append(e)
    if not items:
        raise NotFoundError(f"catalogue {name!r} has no items (import some with `kgnlp recommend import`)")
    items.sort(key=lambda e: e.id)
    others.sort(key=lambda e: e.id)
    index = {e.id: k for k, e in enumerate([*items, *others])}
    facts = list(store.iter_triples())
    triples, rel_names = [], sorted({t[1] for t in facts})
    rel_index = {r: k for k, r in enumerate(rel_names)}
    for h, r, t in facts:
        if h in index and t in index:
            triples.append((index[h], rel_index[r], index[t]))
    kept = [r for r in rows if index.get(r.item_id, len(items)) < len(items)]
    users = {u: k for k, u in enumerate(sorted({r.user_id for r in kept}))}
    us, its, ws, ts = [], [], [], []
    for row in kept:
        i = index[row.item_id]
        us.append(users[row.user_id])
        its.append(i)
        ws.append(row.weight)
        ts.append(row.ts / _DAY)
    inter = Interactions(np.array(us, np.int64), np.array(its, np.int64), np.array(ws, np.float32),
                         np.array(ts, np.float64))  # fmt: skip
    tags = [[str(t) for t in (e.attributes.get("tags") or [])] for e in items]
    texts = [str(e.attributes.get("text") or "") for e in items]
    return Catalogue(
        name, [e.id for e in items], [e.name or e.id for e in items], tags, list(users),
        [e.id for e in items] + [e.id for e in others], [e.name for e in items] + [e.name for e in others],
        rel_names, np.array(triples, np.int64).reshape(-1, 3), inter, dict(meta or {}),
        texts if any(texts) else [],
    )  # fmt: skip
