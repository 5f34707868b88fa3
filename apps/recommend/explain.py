"""Why an item is recommended: a KG path, shared tags or co-listeners that tie it to the user's history.

Preference order: a two-hop KG path ``history item -r-> entity <-r'- item`` through the most
specific shared entity (fewest items attached), then co-play ("people who played X also played
Y"), then popularity. Every path returned exists in the catalogue's graph.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from apps.recommend.data import Catalogue

__all__ = ["Explainer", "Explanation", "PathStep", "relation_phrase"]


@dataclass(frozen=True)
class PathStep:
    """One node of an explanation path and the relation that leads to the next node."""

    id: str
    name: str
    relation: str | None = None


@dataclass
class Explanation:
    """``kind``: ``kg_path`` | ``co_played`` | ``popular``; ``text`` is the template sentence."""

    kind: str
    text: str
    path: list[PathStep] = field(default_factory=list)
    via_item: str | None = None


def relation_phrase(relation: str) -> str:
    """A readable noun for a relation name: ``music.artist.origin`` → ``origin``, ``has_tag`` → ``tag``."""
    last = relation.rsplit(".", 1)[-1]
    if last.startswith("has_"):
        last = last[4:]
    return last.replace("_", " ")


class Explainer:
    """Builds explanations from the catalogue's KG and co-play counts.

    Args:
        catalogue: items, entities, triples.
        item_users: per item the set of users who played it (training events).
    """

    def __init__(self, catalogue: Catalogue, item_users: list[set[int]]) -> None:
        self.catalogue = catalogue
        self.item_users = item_users
        n = catalogue.n_items
        self.links: list[dict[int, int]] = [{} for _ in range(n)]  # item -> {entity: relation}
        degree: dict[int, int] = defaultdict(int)
        for h, r, t in catalogue.triples.tolist():
            if h < n and t >= n:
                self.links[h].setdefault(t, r)
            elif t < n and h >= n:
                self.links[t].setdefault(h, r)
        for lk in self.links:
            for e in lk:
                degree[e] += 1
        self.degree = dict(degree)

    def _name(self, entity: int) -> str:
        c = self.catalogue
        return c.entity_names[entity] or c.entity_ids[entity]

    def explain(self, item: int, history: np.ndarray) -> Explanation:
        """The explanation of recommending ``item`` to a user with ``history`` (most recent last)."""
        c = self.catalogue
        target = c.item_names[item]
        recent = list(dict.fromkeys(reversed(history.tolist())))[:50]
        best: tuple[int, int, int] | None = None  # (degree, history item, entity)
        for h in recent:
            if h == item:
                continue
            for e in self.links[item].keys() & self.links[h].keys():
                cand = (self.degree.get(e, 0), h, e)
                if best is None or cand[0] < best[0]:
                    best = cand
        if best is not None:
            _, h, e = best
            r_h, r_i = c.relations[self.links[h][e]], c.relations[self.links[item][e]]
            named = bool(c.entity_names[e])
            what = (
                f"{relation_phrase(r_i)} {c.entity_names[e]}"
                if named
                else f"{relation_phrase(r_i)} ({c.entity_ids[e]})"
            )
            text = f"Because you played {c.item_names[h]}, which shares the {what} with {target}."
            path = [PathStep(c.item_ids[h], c.item_names[h], r_h), PathStep(c.entity_ids[e], self._name(e), r_i),
                    PathStep(c.item_ids[item], target)]  # fmt: skip
            return Explanation("kg_path", text, path, c.item_ids[h])
        users_i = self.item_users[item]
        co = [(len(users_i & self.item_users[h]), h) for h in recent if h != item] if users_i else []
        co = [x for x in co if x[0] > 0]
        if co:
            n, h = max(co)
            who = f"{n} listener{'s' if n > 1 else ''}"
            text = f"Because you played {c.item_names[h]}: {who} who played it also played {target}."
            return Explanation("co_played", text, [PathStep(c.item_ids[h], c.item_names[h], "co_played"),
                                                   PathStep(c.item_ids[item], target)], c.item_ids[h])  # fmt: skip
        n = len(users_i)
        if n:
            return Explanation("popular", f"{target} is popular: {n} listener{'s' if n > 1 else ''} played it.")
        return Explanation("popular", f"{target} is new and matches your taste by its description.")
