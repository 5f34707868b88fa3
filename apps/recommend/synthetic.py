"""A small synthetic-but-realistic music catalogue, so the demo works without the Last.fm data.

Genres with their own tag vocabularies, countries and labels form the knowledge graph
(``item -genre-> genre -subgenre_of-> family``, ``item -origin-> country``, ``item -label-> label
-based_in-> country``, ``item -has_tag-> tag``). Users prefer one to three genres; plays follow
taste × a Zipf-like popularity; some items are new releases nobody has played (cold start).
Deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from apps.recommend.data import Catalogue, Interactions

__all__ = ["GENRES", "synthetic_catalogue"]

# genre -> (family, tags)
GENRES: dict[str, tuple[str, list[str]]] = {
    "indie rock": ("rock", ["guitar", "lo-fi", "indie", "jangle"]),
    "post-punk": ("rock", ["dark", "bass-driven", "angular", "new wave"]),
    "heavy metal": ("metal", ["riffs", "loud", "headbanging", "distortion"]),
    "doom metal": ("metal", ["slow", "heavy", "sludge", "dark"]),
    "synthwave": ("electronic", ["retro", "synth", "80s", "neon"]),
    "techno": ("electronic", ["club", "minimal", "berlin", "four-on-the-floor"]),
    "ambient": ("electronic", ["calm", "atmospheric", "drone", "instrumental"]),
    "jazz": ("jazz", ["saxophone", "improvisation", "swing", "standards"]),
    "hip hop": ("hip hop", ["rap", "beats", "boom bap", "lyrical"]),
    "folk": ("folk", ["acoustic", "singer-songwriter", "storytelling", "banjo"]),
    "soul": ("soul", ["vocals", "groove", "motown", "warm"]),
    "classical": ("classical", ["orchestra", "piano", "baroque", "instrumental"]),
}
MOODS = ["melancholic", "upbeat", "energetic", "chill", "romantic", "aggressive", "dreamy", "late night"]
COUNTRIES = ["United Kingdom", "United States", "Germany", "Sweden", "Japan", "France", "Brazil", "Canada"]
ADJ = ["Velvet", "Silver", "Midnight", "Broken", "Golden", "Electric", "Hollow", "Crimson", "Quiet", "Wild",
       "Paper", "Neon", "Iron", "Glass", "Lunar", "Distant", "Northern", "Static", "Amber", "Hidden"]  # fmt: skip
NOUN = ["Harbor", "Wolves", "Garden", "Signal", "Orchard", "Engines", "Tide", "Parade", "Canyon", "Lanterns",
        "Choir", "Satellites", "Rivers", "Machines", "Foxes", "Atlas", "Horizon", "Ghosts", "Circuit",
        "Meadow"]  # fmt: skip


def synthetic_catalogue(n_users: int = 300, n_items: int = 400, seed: int = 7, days: float = 180.0,
                        cold_share: float = 0.08) -> Catalogue:  # fmt: skip
    """Generate a catalogue.

    Args:
        n_users: users.
        n_items: items (at most 400 distinct names).
        seed: random seed (same seed, same catalogue).
        days: time span of the plays.
        cold_share: share of items released at the end (no plays).

    Returns:
        The catalogue (ids ``item:<k>``, ``user:<k>``).
    """
    rng = np.random.default_rng(seed)
    genres = list(GENRES)
    names = [f"{a} {n}" for a in ADJ for n in NOUN]
    rng.shuffle(names)
    n_items = min(n_items, len(names))
    genre_weight = rng.dirichlet(np.full(len(genres), 2.0))
    item_genre = rng.choice(len(genres), n_items, p=genre_weight)
    item_country = rng.integers(0, len(COUNTRIES), n_items)
    labels = [f"{w} Records" for w in ("Rough", "Warp", "Blue", "Motown", "Sub", "Nonesuch", "Domino", "Ninja")]
    label_country = rng.integers(0, len(COUNTRIES), len(labels))
    item_label = rng.integers(0, len(labels), n_items)
    item_tags: list[list[str]] = []
    for i in range(n_items):
        g = genres[item_genre[i]]
        tags = [g, *rng.choice(GENRES[g][1], 2, replace=False).tolist(), str(rng.choice(MOODS))]
        item_tags.append(tags)
    entity_ids = [f"item:{i}" for i in range(n_items)]
    entity_names = [names[i] for i in range(n_items)]
    index: dict[str, int] = {}

    def ent(eid: str, name: str) -> int:
        if eid not in index:
            index[eid] = len(entity_ids)
            entity_ids.append(eid)
            entity_names.append(name)
        return index[eid]

    relations = ["genre", "subgenre_of", "origin", "label", "based_in", "has_tag"]
    rel = {r: k for k, r in enumerate(relations)}
    triples: list[tuple[int, int, int]] = []
    for g, (family, _) in GENRES.items():
        triples.append((ent(f"genre:{g}", g), rel["subgenre_of"], ent(f"family:{family}", family)))
    for k, lab in enumerate(labels):
        triples.append(
            (ent(f"label:{k}", lab), rel["based_in"], ent(f"country:{label_country[k]}", COUNTRIES[label_country[k]]))
        )
    for i in range(n_items):
        g = genres[item_genre[i]]
        triples.append((i, rel["genre"], ent(f"genre:{g}", g)))
        triples.append((i, rel["origin"], ent(f"country:{item_country[i]}", COUNTRIES[item_country[i]])))
        triples.append((i, rel["label"], ent(f"label:{item_label[i]}", labels[item_label[i]])))
        for t in item_tags[i][1:]:
            triples.append((i, rel["has_tag"], ent(f"tag:{t}", t)))
    # plays: taste x popularity; cold items are released at the end and never played
    n_cold = int(n_items * cold_share)
    cold = rng.choice(n_items, n_cold, replace=False)
    popularity = 1.0 / np.power(rng.permutation(n_items) + 1.0, 0.7)
    popularity[cold] = 0.0
    users, items, weights, ts = [], [], [], []
    for u in range(n_users):
        taste = np.full(len(genres), 0.02)
        fav = rng.choice(len(genres), rng.integers(1, 4), replace=False, p=genre_weight)
        taste[fav] += rng.dirichlet(np.ones(len(fav)))
        p = popularity * taste[item_genre]
        p /= p.sum()
        n = int(np.clip(rng.lognormal(3.0, 0.5), 5, 80))
        chosen = rng.choice(n_items, min(n, int((p > 0).sum())), replace=False, p=p)
        for i in chosen:
            users.append(u)
            items.append(int(i))
            weights.append(float(rng.geometric(0.2)))
            ts.append(float(rng.uniform(0, days)))
    inter = Interactions(np.array(users, np.int64), np.array(items, np.int64), np.array(weights, np.float32),
                         np.array(ts, np.float64))  # fmt: skip
    return Catalogue(
        "synthetic",
        [f"item:{i}" for i in range(n_items)],
        names[:n_items],
        item_tags,
        [f"user:{u}" for u in range(n_users)],
        entity_ids,
        entity_names,
        relations,
        np.array(triples, np.int64),
        inter,
        {"source": f"synthetic_catalogue(seed={seed})", "cold_items": sorted(int(c) for c in cold)},
    )
