"""Last.fm (HetRec 2011) plays + the KGCN music knowledge graph as a :class:`Catalogue`.

The data is non-commercial: it is read from ``../shared/data`` and never shipped. Items are the
3,846 KG-mapped artists in KGCN's order (item index == KGCN index == entity ``music:<index>``, the
ids of the ``music`` demo graph), users those with at least one kept play (KGCN's 1,872), and
each kept play is a positive. Tags used by at least two users for an artist become ``has_tag``
edges to ``tag:<id>`` entities and the item's text.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from apps.recommend.data import Catalogue, Interactions
from kgnlp.errors import NotFoundError

__all__ = ["load_lastfm"]

MIN_TAG_USERS = 2
MAX_TAGS = 10


def load_lastfm(source: Path) -> Catalogue:
    """Build the Last.fm catalogue.

    Args:
        source: the shared data root holding ``kgcn-music-kg/`` and ``hetrec2011-lastfm-2k/``.

    Returns:
        The catalogue (3,846 items, 1,872 users, 21,173 plays, KG + tag triples).

    Raises:
        NotFoundError: a source file is missing.
    """
    kgdir, lfm = Path(source) / "kgcn-music-kg", Path(source) / "hetrec2011-lastfm-2k"
    files = [kgdir / "kg.txt", kgdir / "artist_entity_map.tsv", lfm / "user_artists.dat", lfm / "tags.dat",
             lfm / "user_taggedartists.dat"]  # fmt: skip
    for p in files:
        if not p.is_file():
            raise NotFoundError(f"Last.fm source missing: {p} (pass the shared data root, e.g. ../shared/data)")
    item_of: dict[str, int] = {}
    names: list[str] = []
    artist_ids: list[str] = []
    with (kgdir / "artist_entity_map.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            aid, idx, name = line.rstrip("\n").split("\t", 2)
            if int(idx) != len(names):
                raise NotFoundError(f"artist_entity_map.tsv is not in KGCN index order at {aid}")
            item_of[aid] = int(idx)
            names.append(name)
            artist_ids.append(aid)
    n_items = len(names)
    entity_ids = [f"music:{i}" for i in range(n_items)]
    entity_names = list(names)
    ent_index = {e: i for i, e in enumerate(entity_ids)}
    rel_index: dict[str, int] = {}
    triples: list[tuple[int, int, int]] = []

    def ent(eid: str, name: str = "") -> int:
        if eid not in ent_index:
            ent_index[eid] = len(entity_ids)
            entity_ids.append(eid)
            entity_names.append(name)
        return ent_index[eid]

    with (kgdir / "kg.txt").open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.strip().split("\t")
            if len(parts) != 3:
                continue
            h, r, t = ent(f"music:{parts[0]}"), rel_index.setdefault(parts[1], len(rel_index)), ent(f"music:{parts[2]}")
            triples.append((h, r, t))
    tag_names: dict[str, str] = {}
    with (lfm / "tags.dat").open(encoding="latin-1") as fh:
        next(fh)
        for line in fh:
            tid, _, val = line.rstrip("\n").partition("\t")
            tag_names[tid] = val.strip()
    tag_users: Counter[tuple[int, str]] = Counter()
    seen: set[tuple[str, str, str]] = set()
    with (lfm / "user_taggedartists.dat").open(encoding="ascii") as fh:
        next(fh)
        for line in fh:
            uid, aid, tid, *_ = line.split("\t")
            if aid in item_of and tid in tag_names and (uid, aid, tid) not in seen:
                seen.add((uid, aid, tid))
                tag_users[(item_of[aid], tid)] += 1
    has_tag = rel_index.setdefault("has_tag", len(rel_index))
    per_item: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for (i, tid), n in tag_users.items():
        if n >= MIN_TAG_USERS:
            per_item[i].append((n, tid))
    item_tags: list[list[str]] = [[] for _ in range(n_items)]
    for i, lst in per_item.items():
        lst.sort(key=lambda x: (-x[0], x[1]))
        for _, tid in lst[:MAX_TAGS]:
            item_tags[i].append(tag_names[tid])
            triples.append((i, has_tag, ent(f"tag:{tid}", tag_names[tid])))
    user_of: dict[str, int] = {}
    us, its, ws = [], [], []
    with (lfm / "user_artists.dat").open(encoding="ascii") as fh:
        next(fh)
        for line in fh:
            uid, aid, w = line.split("\t")
            if aid not in item_of:
                continue
            us.append(user_of.setdefault(uid, len(user_of)))
            its.append(item_of[aid])
            ws.append(float(w))
    inter = Interactions(np.array(us, np.int64), np.array(its, np.int64), np.array(ws, np.float32),
                         np.zeros(len(us), np.float64))  # fmt: skip
    relations = [r for r, _ in sorted(rel_index.items(), key=lambda x: x[1])]
    return Catalogue(
        "lastfm",
        [f"artist:{a}" for a in artist_ids],
        names,
        item_tags,
        [f"user:{u}" for u in user_of],
        entity_ids,
        entity_names,
        relations,
        np.array(triples, np.int64).reshape(-1, 3),
        inter,
        {"source": str(source), "licence": "HetRec 2011 Last.fm: non-commercial; KGCN KG: MIT"},
    )
