"""Items added to a trained recommender without retraining: scored at once by their text and graph neighbours.

A new (or edited) item gets:

- its text vector (the sentence embedder) and its text-tower vector: the tower is linear in the
  text vector, so its map is recovered exactly from the trained items by least squares;
- its KG, BPR and LightGCN vectors and its popularity from its graph neighbours: the weighted mean
  over the trained items that share an entity with it (same genre, category, brand …), each
  shared entity weighing ``1/degree`` (a rare shared label says more than a common country).
  Without neighbours these are zero (the floor for popularity): only its text speaks for it;
- zero recency: nobody played it yet.

The next training run learns it like any other item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from apps.recommend.data import Catalogue
from apps.recommend.models.embedding import EmbeddingModel
from apps.recommend.recommender import Recommender

__all__ = ["NewItem", "add_items", "text_tower_map"]


@dataclass(frozen=True)
class NewItem:
    """An item to add or update, with its facts ``(relation, entity id, entity name)`` (item as head).

    Facts given for a known item are added to the ones it has.
    """

    item_id: str
    name: str
    tags: list[str] = field(default_factory=list)
    text: str = ""
    facts: list[tuple[str, str, str]] = field(default_factory=list)


def text_tower_map(text: np.ndarray, tower_items: np.ndarray) -> np.ndarray:
    """``(k + 1, d)`` affine map with ``[text, 1] @ map ≈ tower_items`` (exact for a linear tower)."""
    x = np.concatenate([text.astype(np.float64), np.ones((len(text), 1))], 1)
    sol, *_ = np.linalg.lstsq(x, tower_items.astype(np.float64), rcond=None)
    return sol.astype(np.float32)


def add_items(rec: Recommender, items: Sequence[NewItem], text_vectors: np.ndarray,
              tower_map: np.ndarray | None = None) -> Recommender:  # fmt: skip
    """A new recommender with ``items`` added (or, for known ids, their text, tags and facts updated).

    Item indices of existing items do not change (new items are appended), so users' histories,
    feedback and the trained vectors stay valid.

    Args:
        rec: the served recommender.
        items: items to add or update.
        text_vectors: ``(len(items), k)`` normalised text vectors of ``items`` (the training embedder).
        tower_map: :func:`text_tower_map` of ``rec`` (computed when None).
    """
    c = rec.catalogue
    n_old = c.n_items
    if tower_map is None:
        tower_map = text_tower_map(rec.text, rec.models["text_tower"].items)
    item_ids, names, tags = list(c.item_ids), list(c.item_names), [list(t) for t in c.item_tags]
    texts = list(c.item_texts) if c.item_texts else [""] * n_old
    rows: list[int] = []
    for it in items:
        i = c.item_index(it.item_id)
        if i is None:
            i = len(item_ids)
            item_ids.append(it.item_id)
            names.append(it.name)
            tags.append(list(it.tags))
            texts.append(it.text)
        else:
            names[i], tags[i], texts[i] = it.name, list(it.tags), it.text
        rows.append(i)
    n_new = len(item_ids)
    shift = n_new - n_old
    # entities: items first, then the old non-item entities (shifted), then new ones
    entity_ids = [*item_ids, *c.entity_ids[n_old:]]
    entity_names = [*names, *c.entity_names[n_old:]]
    ent_index = {e: k for k, e in enumerate(entity_ids)}
    relations = list(c.relations)
    rel_index = {r: k for k, r in enumerate(relations)}
    old = c.triples.copy()
    for col in (0, 2):
        old[old[:, col] >= n_old, col] += shift
    triples = [tuple(t) for t in old.tolist()]
    for it, i in zip(items, rows, strict=True):
        for rel, eid, ename in it.facts:
            if eid not in ent_index:
                ent_index[eid] = len(entity_ids)
                entity_ids.append(eid)
                entity_names.append(ename)
            triples.append((i, rel_index.setdefault(rel, len(relations)), ent_index[eid]))
            if len(relations) < len(rel_index):
                relations.append(rel)
    catalogue = replace(c, item_ids=item_ids, item_names=names, item_tags=tags, entity_ids=entity_ids,
                        entity_names=entity_names, relations=relations,
                        triples=np.array(sorted(set(triples)), np.int64).reshape(-1, 3),
                        item_texts=texts if any(texts) else [])  # fmt: skip
    text = np.concatenate([rec.text, np.zeros((shift, rec.text.shape[1]), np.float32)])
    text[rows] = text_vectors
    weights = _neighbour_weights(catalogue, range(n_old, n_new), n_old)  # (shift, n_old)
    has = weights.sum(1) > 0
    weights[has] /= weights[has].sum(1, keepdims=True)
    models = {}
    for name, m in rec.models.items():
        vec = np.concatenate([m.items, weights @ m.items]).astype(np.float32)
        if name == "text_tower":
            vec[rows] = np.concatenate([text[rows], np.ones((len(rows), 1), np.float32)], 1) @ tower_map
        models[name] = EmbeddingModel(name, m.users, vec, m.info)
    floor = float(rec.popularity.min()) if len(rec.popularity) else 0.0
    popularity = np.concatenate([rec.popularity, np.where(has, weights @ rec.popularity, floor)]).astype(np.float32)
    recency = np.concatenate([rec.recency, np.zeros(shift, np.float32)])
    return Recommender(catalogue, models, popularity, text, recency, rec.ranker)


def _neighbour_weights(catalogue: Catalogue, rows: range, n_trained: int) -> np.ndarray:
    """``(len(rows), n_trained)``: how strongly each new item is tied to each trained item through shared entities."""
    triples, n_items = catalogue.triples, catalogue.n_items
    item_side = (triples[:, 0] < n_items) & (triples[:, 2] >= n_items)
    heads, tails = triples[item_side, 0], triples[item_side, 2]
    by_entity: dict[int, set[int]] = {}
    for h, t in zip(heads.tolist(), tails.tolist(), strict=True):
        by_entity.setdefault(t, set()).add(h)
    out = np.zeros((len(rows), n_trained), np.float32)
    for k, i in enumerate(rows):
        for t in set(tails[heads == i].tolist()):
            peers = [j for j in by_entity.get(t, ()) if j < n_trained]
            if peers:
                out[k, peers] += 1.0 / len(by_entity[t])
    return out
