"""The catalogue a recommender learns from: users, items with text, a knowledge graph, interactions.

Items are the first ``n_items`` entities of the knowledge graph (entity index == item index), so
the collaborative knowledge graph is ``users + entities`` with user–item and entity–entity edges.
Saved as ``catalogue.npz`` (integer arrays) + ``catalogue.json`` (names, ids, tags): no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kgnlp.errors import NotFoundError, ValidationError
from kgnlp.files import atomic_write_bytes, atomic_write_json

__all__ = ["Catalogue", "Interactions", "item_text"]


def item_text(name: str, tags: list[str], description: str = "") -> str:
    """The text the text tower reads: ``"name. description. tags: a, b, c"`` (first 1,000 chars, 12 tags)."""
    head = f"{name}. {description[:1000]}" if description else name
    joined = ", ".join(tags[:12])
    return f"{head}. tags: {joined}" if joined else head


@dataclass
class Interactions:
    """Positive user–item events (plays, clicks), one row each.

    Attributes:
        users: ``(n,)`` int64 user indices.
        items: ``(n,)`` int64 item indices.
        weights: ``(n,)`` float32 play counts or 1.0.
        ts: ``(n,)`` float64 event time (days; 0 when unknown).
    """

    users: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    ts: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.users)
        if not (len(self.items) == len(self.weights) == len(self.ts) == n):
            raise ValidationError("interaction arrays must have the same length")

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask_or_idx: np.ndarray) -> Interactions:
        """The rows selected by a boolean mask or an index array."""
        return Interactions(
            self.users[mask_or_idx], self.items[mask_or_idx], self.weights[mask_or_idx], self.ts[mask_or_idx]
        )

    def pairs(self) -> set[tuple[int, int]]:
        """The distinct ``(user, item)`` pairs."""
        return set(zip(self.users.tolist(), self.items.tolist(), strict=True))

    def by_user(self, n_users: int) -> list[np.ndarray]:
        """Item indices per user (distinct, in time order)."""
        order = np.lexsort((self.ts, self.users))
        out: list[list[int]] = [[] for _ in range(n_users)]
        for u, i in zip(self.users[order].tolist(), self.items[order].tolist(), strict=True):
            out[u].append(i)
        return [np.array(list(dict.fromkeys(x)), dtype=np.int64) for x in out]


@dataclass
class Catalogue:
    """Users, items (with names and tags), a knowledge graph over items and interactions.

    Attributes:
        name: ``lastfm`` or ``synthetic``.
        item_ids: external item ids (the API's ids), index = item index.
        item_names: display names.
        item_tags: tags per item (genres, moods …), used for text and tag overlap.
        user_ids: external user ids.
        entity_ids: KG entity ids; the first ``n_items`` are the items.
        entity_names: display names ("" when the KG gives none).
        relations: relation names.
        triples: ``(m, 3)`` int64 ``(head, relation, tail)`` over entity indices.
        interactions: positive events.
        meta: free-form facts about the source (licence, counts).
        item_texts: optional descriptions per item (empty list: none), read by the text tower.
    """

    name: str
    item_ids: list[str]
    item_names: list[str]
    item_tags: list[list[str]]
    user_ids: list[str]
    entity_ids: list[str]
    entity_names: list[str]
    relations: list[str]
    triples: np.ndarray
    interactions: Interactions
    meta: dict[str, Any] = field(default_factory=dict)
    item_texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = self.n_items
        if not (len(self.item_names) == len(self.item_tags) == n):
            raise ValidationError("item_ids, item_names and item_tags must have the same length")
        if self.item_texts and len(self.item_texts) != n:
            raise ValidationError("item_texts must be empty or give one text per item")
        if len(self.entity_ids) < n or len(self.entity_names) != len(self.entity_ids):
            raise ValidationError("the first n_items entities must be the items")
        if len(self.interactions) and (
            self.interactions.items.max() >= n or self.interactions.users.max() >= self.n_users
        ):
            raise ValidationError("interaction index out of range")
        self._item_index: dict[str, int] = {x: i for i, x in enumerate(self.item_ids)}
        self._user_index: dict[str, int] = {x: i for i, x in enumerate(self.user_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_entities(self) -> int:
        return len(self.entity_ids)

    def item_index(self, item_id: str) -> int | None:
        """The index of an external item id, or None."""
        return self._item_index.get(item_id)

    def user_index(self, user_id: str) -> int | None:
        """The index of an external user id, or None."""
        return self._user_index.get(user_id)

    def item_text(self, i: int) -> str:
        """The text the text tower reads (see :func:`item_text`)."""
        return item_text(self.item_names[i], self.item_tags[i], self.item_texts[i] if self.item_texts else "")

    def item_counts(self, interactions: Interactions | None = None) -> np.ndarray:
        """Distinct users per item over ``interactions`` (default: all)."""
        inter = interactions or self.interactions
        pairs = np.unique(np.stack([inter.users, inter.items], 1), axis=0) if len(inter) else np.zeros((0, 2), int)
        return np.bincount(pairs[:, 1], minlength=self.n_items).astype(np.float32)

    def save(self, folder: Path) -> None:
        """Write ``catalogue.npz`` + ``catalogue.json`` into ``folder`` (each atomically)."""
        import io

        folder = Path(folder)
        buf = io.BytesIO()
        inter = self.interactions
        np.savez(buf, triples=self.triples, users=inter.users, items=inter.items, weights=inter.weights, ts=inter.ts)
        atomic_write_bytes(folder / "catalogue.npz", buf.getvalue())
        atomic_write_json(
            folder / "catalogue.json",
            {"name": self.name, "item_ids": self.item_ids, "item_names": self.item_names,
             "item_tags": self.item_tags, "user_ids": self.user_ids, "entity_ids": self.entity_ids,
             "entity_names": self.entity_names, "relations": self.relations, "meta": self.meta,
             "item_texts": self.item_texts},
        )  # fmt: skip

    @classmethod
    def load(cls, folder: Path) -> Catalogue:
        """Read a catalogue written by :meth:`save`.

        Raises:
            NotFoundError: the files are missing.
        """
        folder = Path(folder)
        if not (folder / "catalogue.json").is_file():
            raise NotFoundError(f"no catalogue in {folder}")
        meta = json.loads((folder / "catalogue.json").read_text(encoding="utf-8"))
        with np.load(folder / "catalogue.npz", allow_pickle=False) as z:
            inter = Interactions(z["users"], z["items"], z["weights"], z["ts"])
            triples = z["triples"]
        return cls(
            meta["name"], meta["item_ids"], meta["item_names"], meta["item_tags"], meta["user_ids"],
            meta["entity_ids"], meta["entity_names"], meta["relations"], triples, inter, meta.get("meta", {}),
            meta.get("item_texts", []),
        )  # fmt: skip
