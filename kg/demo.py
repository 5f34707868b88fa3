"""Demo graphs built from small source files: ``retail``, ``finance`` and ``music``.

``retail`` and ``finance`` are built from redistributable files committed under
``data/<name>/`` (licences alongside). ``music`` joins KGCN's Last.fm knowledge
graph to artist names and tags from ``../shared/data``; Last.fm data is
non-commercial, so it is only read from there and never shipped.

Every recipe writes its whole graph with one atomic ``upsert``; rebuilding
into a store that already holds it changes nothing.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kg.store import Entity, GraphStore, Relation
from kg.text import normalize_key
from kgnlp.errors import ConfigurationError, NotFoundError

__all__ = ["DATA_DIR", "DEMO_GRAPHS", "RECIPE_VERSIONS", "DemoGraph", "build_demo", "company_aliases"]

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True, slots=True)
class DemoGraph:
    """A demo graph recipe: ``shipped`` means its sources are committed under ``data/``."""

    name: str
    shipped: bool
    description: str


RECIPE_VERSIONS = {"retail": 1, "finance": 2, "music": 1}
"""Bumped when a recipe builds a different graph from the same files (finance 2: market indices own
"Dow" and "Nasdaq"): ``kgnlp kg build-demo`` rebuilds a graph an older version built."""

DEMO_GRAPHS: dict[str, DemoGraph] = {
    "retail": DemoGraph(
        "retail",
        True,
        "Bitext customer-service intents, categories, slot types and FAQ answers + Best Buy product-category taxonomy",
    ),
    "finance": DemoGraph(
        "finance",
        True,
        "S&P 500 companies, tickers, GICS sectors and sub-industries, HQ cities/states, peers by sub-industry, "
        "market indices",
    ),
    "music": DemoGraph(
        "music",
        False,
        "KGCN Last.fm music KG with artist names and tags (benchmarks only; needs --source ../shared/data)",
    ),
}

# The look-behind lets a match start only where a whitespace run starts (linear on long runs).
_SUFFIX = re.compile(
    r"(?<![\s,]),?\s+(inc\.?|incorporated|corp\.?|corporation|company|co\.?|plc|ltd\.?|limited|"
    r"holdings?|group|n\.v\.|s\.a\.|ag|se|the)$",
    re.IGNORECASE,
)


# US market indices: headlines name them by words that are also short names of listed companies
# ("the Dow" is the index far more often than Dow Inc.). They are entities of their own, and those
# words are theirs alone: a company keeps its full name ("Dow Inc."), ticker and cashtag.
_MARKET_INDICES = (
    (
        "dow_jones",
        "Dow Jones Industrial Average",
        ("Dow Jones", "Dow", "DJIA"),
        "price-weighted index of 30 US blue chips",
    ),
    ("nasdaq_composite", "Nasdaq Composite", ("Nasdaq",), "index of the stocks listed on the Nasdaq exchange"),
    ("sp_500", "S&P 500", ("S&P500", "SPX"), "index of 500 large US companies"),
)
# suffix-stripped short names that are ordinary headline words, never the company alone
# ("News Highlights: Top Energy News" is not News Corp)
_NOT_A_NAME_ALONE = frozenset({"news"})


def _slug(text: str) -> str:
    return normalize_key(text).replace(" ", "_")


def company_aliases(name: str, ticker: str) -> list[str]:
    """Return name variants for a listed company.

    Args:
        name: Official name, e.g. ``"Alphabet Inc. (Class A)"``.
        ticker: Ticker symbol, e.g. ``"GOOGL"``.

    Returns:
        Aliases without duplicates: the ticker, the name without share-class
        notes and legal suffixes (``"Alphabet"``).
    """
    out = [ticker]
    base = re.sub(r"\s*\(.*?\)\s*", " ", name).strip()
    prev = None
    while base != prev:
        prev = base
        base = _SUFFIX.sub("", base).strip().rstrip(",")
        base = re.sub(r"^the\s+", "", base, flags=re.IGNORECASE)
    for v in (re.sub(r"\s*\(.*?\)\s*", " ", name).strip(), base):
        if v and normalize_key(v) != normalize_key(name) and v not in out and normalize_key(v) not in _NOT_A_NAME_ALONE:
            out.append(v)
    return out


def _finance(src: Path) -> tuple[list[Entity], list[Relation]]:
    f = src / "constituents.csv"
    if not f.exists():
        raise NotFoundError(f"finance demo source missing: {f}")
    ents: dict[str, Entity] = {}
    rels: list[Relation] = []
    by_sub: dict[str, list[str]] = defaultdict(list)
    source = "sp500-constituents (ODC-PDDL-1.0)"
    with f.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            tk, name = row["Symbol"], row["Security"]
            sector, sub, hq = row["GICS Sector"], row["GICS Sub-Industry"], row["Headquarters Location"]
            cid = f"company:{tk}"
            ents[cid] = Entity(
                cid,
                "Company",
                name,
                aliases=company_aliases(name, tk),
                attributes={
                    "ticker": tk,
                    "cik": row["CIK"],
                    "founded": row["Founded"],
                    "date_added": row["Date added"],
                    "gics_sector": sector,
                    "gics_sub_industry": sub,
                    "headquarters": hq,
                },
                description=f"{name} ({tk}) is an S&P 500 company in {sub} ({sector}), headquartered in {hq}.",
                source=source,
            )
            sid, subid = f"sector:{_slug(sector)}", f"subindustry:{_slug(sub)}"
            ents.setdefault(sid, Entity(sid, "Sector", sector, source=source, description=f"GICS sector {sector}"))
            ents.setdefault(
                subid,
                Entity(subid, "SubIndustry", sub, source=source, description=f"GICS sub-industry {sub} ({sector})"),
            )
            rels += [
                Relation(cid, "IN_SECTOR", sid, source=source),
                Relation(cid, "IN_SUB_INDUSTRY", subid, source=source),
                Relation(subid, "PART_OF", sid, source=source),
            ]
            by_sub[subid].append(cid)
            city, _, state = hq.rpartition(",")
            city, state = city.strip() or hq.strip(), state.strip()
            cityid = f"city:{_slug(hq)}"
            ents.setdefault(cityid, Entity(cityid, "City", city, attributes={"region": state}, source=source))
            rels.append(Relation(cid, "HEADQUARTERED_IN", cityid, source=source))
            if state:
                stid = f"region:{_slug(state)}"
                ents.setdefault(stid, Entity(stid, "Region", state, source=source))
                rels.append(Relation(cityid, "LOCATED_IN", stid, source=source))
    index_keys = set()
    for slug, name, aliases, what in _MARKET_INDICES:
        iid = f"index:{slug}"
        ents[iid] = Entity(
            iid, "MarketIndex", name, aliases=list(aliases), description=f"{name}: {what}.", source="kgnlp"
        )
        index_keys |= {normalize_key(a) for a in (name, *aliases)}
    for e in ents.values():
        if e.type == "Company":
            e.aliases[:] = [a for a in e.aliases if a == e.attributes["ticker"] or normalize_key(a) not in index_keys]
    for members in by_sub.values():
        members.sort()
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                rels.append(Relation(a, "PEER_OF", b, source=source))
    return list(ents.values()), rels


def _title(code: str) -> str:
    return code.replace("_", " ").strip().lower()


# how the company is reached: the intents that ask for it get these as graph facts
_CONTACT_POLICIES = {
    "customer_support_phone_number": "support phone",
    "customer_support_availability": "support hours",
    "customer_support_email": "support email",
    "live_chat": "live chat",
}
_CONTACT_INTENTS = ("contact_customer_service", "contact_human_agent", "complaint", "payment_issue")


def _contact_policies(profile: Path, ents: dict[str, Entity], rels: list[Relation]) -> None:
    """``Policy`` entities for the company's contact channels (``company.yaml``), each reached
    from the intents that need them (``REACHED_VIA``): "contact customer service — reached via →
    support hours: Monday to Friday, …" is then a fact retrieval can cite."""
    import yaml

    if not profile.is_file():
        return
    values = yaml.safe_load(profile.read_text(encoding="utf-8")) or {}
    psrc = f"company profile ({profile.name})"
    for key, label in _CONTACT_POLICIES.items():
        if not isinstance(values.get(key), str | int | float):
            continue
        pid = f"cs:policy:{key}"
        ents[pid] = Entity(pid, "Policy", f"{label}: {values[key]}", aliases=[label], source=psrc,
                           description=f"how customers reach the company: {label}")  # fmt: skip
        for intent in _CONTACT_INTENTS:
            if f"cs:intent:{intent}" in ents:
                rels.append(Relation(f"cs:intent:{intent}", "REACHED_VIA", pid, source=psrc))


def _retail(src: Path) -> tuple[list[Entity], list[Relation]]:
    bitext = src / "bitext_customer_support.csv"
    bestbuy = src / "bestbuy_categories.json"
    for p in (bitext, bestbuy):
        if not p.exists():
            raise NotFoundError(f"retail demo source missing: {p}")
    ents: dict[str, Entity] = {}
    rels: list[Relation] = []
    bsrc = "bitext customer support (CDLA-Sharing-1.0)"
    examples: dict[str, list[str]] = defaultdict(list)
    slot_counts: Counter[tuple[str, str]] = Counter()
    n_doc: Counter[str] = Counter()
    seen_resp: set[str] = set()
    with bitext.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            intent, cat = row["intent"].strip(), row["category"].strip()
            iid, catid = f"cs:intent:{intent}", f"cs:category:{cat.lower()}"
            ents.setdefault(
                catid,
                Entity(
                    catid,
                    "SupportCategory",
                    _title(cat),
                    aliases=[cat],
                    description=f"customer-support topic {_title(cat)}",
                    source=bsrc,
                ),
            )
            if iid not in ents:
                ents[iid] = Entity(
                    iid,
                    "Intent",
                    _title(intent),
                    aliases=[intent],
                    description=f"customer intent: {_title(intent)} (topic {_title(cat)})",
                    source=bsrc,
                )
                rels.append(Relation(iid, "IN_CATEGORY", catid, source=bsrc))
            if len(examples[iid]) < 5:
                examples[iid].append(row["instruction"].strip())
            if row["entity_type"]:
                slot_counts[(iid, row["entity_type"])] += 1
            resp = row["response"].replace("\r\n", "\n").strip()
            if resp in seen_resp:
                continue
            seen_resp.add(resp)
            n_doc[intent] += 1
            did = f"cs:faq:{intent}:{n_doc[intent]}"
            ents[did] = Entity(
                did,
                "Document",
                "",
                attributes={"question": row["instruction"], "intent": intent},
                description=resp,
                source=bsrc,
            )
            rels += [Relation(did, "ANSWERS", iid, source=bsrc), Relation(did, "ABOUT", catid, source=bsrc)]
    for iid, ex in examples.items():
        ents[iid].attributes["examples"] = ex
    for (iid, slot), n in sorted(slot_counts.items()):
        sid = f"cs:slot:{slot}"
        ents.setdefault(
            sid,
            Entity(
                sid,
                "SlotType",
                _title(slot),
                aliases=[slot],
                source=bsrc,
                description=f"information a customer gives: {_title(slot)}",
            ),
        )
        rels.append(Relation(iid, "USES_SLOT", sid, weight=float(n), source=bsrc))

    _contact_policies(src / "company.yaml", ents, rels)

    psrc = "Best Buy open data categories (CC0-1.0)"
    cats = json.loads(bestbuy.read_text(encoding="utf-8"))
    for c in cats:
        cid = f"bestbuy:{c['id']}"
        path = [p.get("name") or p["id"] for p in c.get("path", [])]
        ents[cid] = Entity(
            cid,
            "ProductCategory",
            (c.get("name") or c["id"]).strip(),
            attributes={"path": " > ".join(path)},
            source=psrc,
        )
    for c in cats:
        cid = f"bestbuy:{c['id']}"
        path = c.get("path", [])
        for p in path:
            pid = f"bestbuy:{p['id']}"
            ents.setdefault(pid, Entity(pid, "ProductCategory", (p.get("name") or p["id"]).strip(), source=psrc))
        if len(path) >= 2:
            rels.append(Relation(cid, "SUBCATEGORY_OF", f"bestbuy:{path[-2]['id']}", source=psrc))
        for sub in c.get("subCategories", []):
            sid = f"bestbuy:{sub['id']}"
            ents.setdefault(sid, Entity(sid, "ProductCategory", (sub.get("name") or sub["id"]).strip(), source=psrc))
            rels.append(Relation(sid, "SUBCATEGORY_OF", cid, source=psrc))
    return list(ents.values()), rels


def _music(src: Path) -> tuple[list[Entity], list[Relation]]:
    kgdir, lfm = src / "kgcn-music-kg", src / "hetrec2011-lastfm-2k"
    for p in (kgdir / "kg.txt", kgdir / "artist_entity_map.tsv", lfm / "tags.dat", lfm / "user_taggedartists.dat"):
        if not p.exists():
            raise NotFoundError(f"music demo source missing: {p} (pass --source ../shared/data)")
    msrc, lsrc = "KGCN music KG (MIT)", "HetRec 2011 Last.fm (non-commercial)"
    ents: dict[str, Entity] = {}
    artist_of: dict[str, str] = {}
    with (kgdir / "artist_entity_map.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            aid, idx, name = line.rstrip("\n").split("\t", 2)
            eid = f"music:{idx}"
            artist_of[aid] = eid
            ents[eid] = Entity(eid, "Artist", name, attributes={"lastfm_artist_id": int(aid)}, source=lsrc)
    rels: list[Relation] = []
    with (kgdir / "kg.txt").open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.strip().split("\t")
            if len(parts) != 3:
                continue
            h, r, t = (f"music:{parts[0]}", parts[1], f"music:{parts[2]}")
            for x in (h, t):
                ents.setdefault(x, Entity(x, "MusicEntity", "", source=msrc))
            rels.append(Relation(h, r, t, source=msrc))
    tags: dict[str, str] = {}
    with (lfm / "tags.dat").open(encoding="latin-1") as fh:
        next(fh)
        for line in fh:
            tid, _, val = line.rstrip("\n").partition("\t")
            tags[tid] = val.strip()
    counts: Counter[tuple[str, str]] = Counter()
    with (lfm / "user_taggedartists.dat").open(encoding="ascii") as fh:
        next(fh)
        for line in fh:
            _, aid, tid, *_ = line.split("\t")
            if aid in artist_of and tid in tags:
                counts[(artist_of[aid], tid)] += 1
    for (eid, tid), n in counts.items():
        if n < 2:  # single-user tags are mostly noise
            continue
        tag_id = f"tag:{tid}"
        ents.setdefault(tag_id, Entity(tag_id, "Tag", tags[tid], source=lsrc))
        rels.append(Relation(eid, "HAS_TAG", tag_id, weight=float(n), source=lsrc))
    return list(ents.values()), rels


_RECIPES = {"retail": _retail, "finance": _finance, "music": _music}


def build_demo(name: str, store: GraphStore, source: Path | None = None) -> dict[str, Any]:
    """Build a demo graph into ``store`` (idempotent, one atomic write).

    Args:
        name: ``retail``, ``finance`` or ``music`` (see :data:`DEMO_GRAPHS`).
        store: Target store.
        source: For ``retail``/``finance`` the folder with the source files
            (default ``data/<name>``); for ``music`` the shared data root holding
            ``kgcn-music-kg/`` and ``hetrec2011-lastfm-2k/`` (required).

    Returns:
        ``{"graph", "entities", "relations", "added", "updated", "seconds"}``.
    """
    if name not in _RECIPES:
        raise ConfigurationError(f"demo graph must be one of {sorted(_RECIPES)}, got {name!r}")
    if source is None:
        if not DEMO_GRAPHS[name].shipped:
            raise ConfigurationError(f"demo graph {name!r} needs --source (e.g. ../shared/data)")
        source = DATA_DIR / name
    t0 = time.perf_counter()
    ents, rels = _RECIPES[name](Path(source))
    res = store.upsert(ents, rels, create_missing=False)
    return {
        "graph": name,
        "entities": len(ents),
        "relations": len({r.key for r in rels}),
        "added": res.entities_added + res.relations_added,
        "updated": res.entities_updated + res.relations_updated,
        "seconds": round(time.perf_counter() - t0, 3),
    }
