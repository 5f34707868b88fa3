"""The interaction log of each catalogue in SQL: imported plays/purchases the next training reads.

It also keeps each catalogue's revision, a counter every catalogue edit bumps, so other workers
and replicas on the same database notice the edit and re-read the catalogue's graph.

One row per event, keyed by a content hash (or the caller's ``event_id``), so importing the same
file twice adds nothing and two replicas writing the same events store them once. Feedback posted
to ``/feedback`` stays in :mod:`apps.recommend.feedback` (it also carries skips); training reads both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, delete, func, select, update

from kgnlp.errors import StoreError

__all__ = ["InteractionLog", "InteractionRow"]

_metadata = MetaData()
_table = Table(
    "rec_interactions",
    _metadata,
    Column("id", String(64), primary_key=True),
    Column("catalogue", String(64), nullable=False, index=True),
    Column("user_id", String(256), nullable=False),
    Column("item_id", String(256), nullable=False),
    Column("weight", Float, nullable=False),
    Column("ts", Float, nullable=False),  # unix seconds (0: unknown)
)
_revisions = Table(
    "rec_catalogue_revisions",
    _metadata,
    Column("catalogue", String(64), primary_key=True),
    Column("revision", Integer, nullable=False),
)
_CHUNK = 2_000


@dataclass(frozen=True)
class InteractionRow:
    """One positive event of a user with an item (``ts`` in unix seconds, 0 when unknown)."""

    user_id: str
    item_id: str
    weight: float = 1.0
    ts: float = 0.0
    event_id: str | None = None

    def key(self, catalogue: str) -> str:
        """The row's identity: the caller's event id, else a hash of its content."""
        if self.event_id:
            return hashlib.sha256(f"{catalogue}\x00id\x00{self.event_id}".encode()).hexdigest()[:40]
        raw = f"{catalogue}\x00{self.user_id}\x00{self.item_id}\x00{self.weight!r}\x00{self.ts!r}"
        return hashlib.sha256(raw.encode()).hexdigest()[:40]


class InteractionLog:
    """SQL-backed interaction log (SQLite by default, PostgreSQL for replicas).

    Args:
        url: SQLAlchemy URL of the service database.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Any = None

    def open(self) -> InteractionLog:
        """Connect and create the table.

        Raises:
            StoreError: the database cannot be reached.
        """
        from apps.core.db import open_engine

        if self._engine is None:
            self._engine = open_engine(self.url, _metadata, "the interaction log")
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> InteractionLog:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, catalogue: str, rows: Sequence[InteractionRow]) -> int:
        """Store ``rows`` in one transaction (all or nothing); returns how many were new."""
        from apps.core.db import insert_or_ignore

        engine = self.open()._engine
        stmt = insert_or_ignore(engine.dialect.name, _table, ["id"])
        seen: set[str] = set()
        values = []
        for r in rows:
            k = r.key(catalogue)
            if k not in seen:
                seen.add(k)
                values.append({"id": k, "catalogue": catalogue, "user_id": r.user_id, "item_id": r.item_id,
                               "weight": float(r.weight), "ts": float(r.ts)})  # fmt: skip
        try:
            with engine.begin() as conn:
                before = self._count(conn, catalogue)
                for start in range(0, len(values), _CHUNK):
                    conn.execute(stmt, values[start : start + _CHUNK])
                return self._count(conn, catalogue) - before
        except StoreError:
            raise
        except Exception as e:  # sqlalchemy raises many kinds; all mean "nothing was stored"
            raise StoreError(f"cannot store interactions: {e}") from e

    @staticmethod
    def _count(conn: Any, catalogue: str) -> int:
        return int(conn.scalar(select(func.count()).select_from(_table).where(_table.c.catalogue == catalogue)) or 0)

    def rows(self, catalogue: str) -> list[InteractionRow]:
        """Every event of a catalogue, in insertion-independent order (by time, then id)."""
        engine = self.open()._engine
        q = (
            select(_table.c.user_id, _table.c.item_id, _table.c.weight, _table.c.ts)
            .where(_table.c.catalogue == catalogue)
            .order_by(_table.c.ts, _table.c.id)
        )
        with engine.connect() as conn:
            return [InteractionRow(u, i, float(w), float(t)) for u, i, w, t in conn.execute(q)]

    def count(self, catalogue: str) -> int:
        """How many events a catalogue has."""
        with self.open()._engine.connect() as conn:
            return self._count(conn, catalogue)

    def clear(self, catalogue: str) -> int:
        """Delete a catalogue's events (returns how many)."""
        with self.open()._engine.begin() as conn:
            return int(conn.execute(delete(_table).where(_table.c.catalogue == catalogue)).rowcount or 0)

    def revision(self, catalogue: str) -> int:
        """The catalogue's edit counter (0 before the first edit)."""
        with self.open()._engine.connect() as conn:
            q = select(_revisions.c.revision).where(_revisions.c.catalogue == catalogue)
            return int(conn.scalar(q) or 0)

    def bump(self, catalogue: str) -> int:
        """Count one edit of the catalogue; returns the new revision."""
        from apps.core.db import insert_or_ignore

        engine = self.open()._engine
        with engine.begin() as conn:
            conn.execute(insert_or_ignore(engine.dialect.name, _revisions, ["catalogue"]),
                         [{"catalogue": catalogue, "revision": 0}])  # fmt: skip
            conn.execute(update(_revisions).where(_revisions.c.catalogue == catalogue)
                         .values(revision=_revisions.c.revision + 1))  # fmt: skip
            return int(conn.scalar(select(_revisions.c.revision).where(_revisions.c.catalogue == catalogue)) or 0)
