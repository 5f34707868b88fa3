"""Companies of the finance graph: who they are, their sector, sub-industry and peers.

Read once from the graph store (``Company`` entities with ``IN_SECTOR``,
``IN_SUB_INDUSTRY`` and ``PEER_OF`` relations, as ``kgnlp kg build-demo finance`` writes
them) so per-event attribution and alert explanations need no graph round trip.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kgnlp.errors import NotFoundError

__all__ = ["Company", "CompanyDirectory"]


@dataclass
class Company:
    id: str
    name: str
    ticker: str | None = None
    sector: str | None = None  # entity id, e.g. sector:information-technology
    sector_name: str | None = None
    sub_industry: str | None = None
    sub_industry_name: str | None = None
    peers: set[str] = field(default_factory=set)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "ticker": self.ticker, "sector": self.sector_name,
                "sub_industry": self.sub_industry_name}  # fmt: skip


class CompanyDirectory:
    """Companies by id and ticker, with sector/sub-industry/peer edges from the graph."""

    def __init__(self, companies: dict[str, Company]) -> None:
        self.companies = companies
        self._by_ticker = {c.ticker.upper(): c.id for c in companies.values() if c.ticker}

    @classmethod
    def from_store(cls, store: Any) -> CompanyDirectory:
        """Build the directory from a graph store (any ``GraphStore`` backend)."""
        names: dict[str, str] = {}
        companies: dict[str, Company] = {}
        for e in store.iter_entities():
            names[e.id] = e.display_name()
            if e.type == "Company":
                ticker = e.attributes.get("ticker")
                companies[e.id] = Company(e.id, e.display_name(), ticker if isinstance(ticker, str) else None)
        peers: dict[str, set[str]] = defaultdict(set)
        for r in store.iter_relations():
            c = companies.get(r.head)
            if c is None:
                continue
            if r.type == "IN_SECTOR":
                c.sector, c.sector_name = r.tail, names.get(r.tail, r.tail)
            elif r.type == "IN_SUB_INDUSTRY":
                c.sub_industry, c.sub_industry_name = r.tail, names.get(r.tail, r.tail)
            elif r.type == "PEER_OF" and r.tail in companies:
                peers[r.head].add(r.tail)
                peers[r.tail].add(r.head)
        for cid, ps in peers.items():
            companies[cid].peers = ps
        return cls(companies)

    def __len__(self) -> int:
        return len(self.companies)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self.companies

    def get(self, entity_id: str) -> Company:
        c = self.companies.get(entity_id)
        if c is None:
            raise NotFoundError(f"no company {entity_id!r} in the finance graph")
        return c

    def resolve(self, ref: str) -> Company:
        """A company by entity id (``company:AAPL``), ticker (``AAPL``) or cashtag (``$AAPL``).

        Raises:
            NotFoundError: nothing matches.
        """
        if ref in self.companies:
            return self.companies[ref]
        cid = self._by_ticker.get(ref.lstrip("$").upper())
        if cid is None:
            raise NotFoundError(f"no company {ref!r} in the finance graph (use an id like company:AAPL or a ticker)")
        return self.companies[cid]

    def sector_members(self, sector_id: str) -> list[str]:
        return sorted(c.id for c in self.companies.values() if c.sector == sector_id)
