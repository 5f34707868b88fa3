"""Feedback events (click / play / skip) in SQL: they update a user's profile at once and feed the next training run.

SQLite (WAL) by default, any SQLAlchemy URL otherwise. Events carrying an ``event_id`` are
stored once (a retried POST changes nothing).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Integer, String, create_engine, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from kgnlp.errors import StoreError

__all__ = ["FeedbackEvent", "FeedbackStore", "UserFeedback"]

POSITIVE = ("click", "play")


class _Base(DeclarativeBase):
    pass


class _Event(_Base):
    __tablename__ = "rec_feedback"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(128), unique=True)
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    item_id: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16))
    ts: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class FeedbackEvent:
    """One event; ``kind`` is ``click``, ``play`` or ``skip``."""

    user_id: str
    item_id: str
    kind: str
    event_id: str | None = None
    ts: float | None = None


@dataclass
class UserFeedback:
    """A user's events so far: positive item ids and skipped item ids, oldest first."""

    positives: list[str]
    skips: list[str]

    def __bool__(self) -> bool:
        return bool(self.positives or self.skips)


class FeedbackStore:
    """SQL-backed feedback log.

    Args:
        url: SQLAlchemy URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Any = None

    def open(self) -> FeedbackStore:
        """Connect and create the table (SQLite in WAL mode)."""
        from apps.core.db import create_tables, private_sqlite_file

        try:
            private_sqlite_file(self.url)  # the state database: owner-only (it shares the file with sessions)
            self._engine = create_engine(self.url, future=True, pool_pre_ping=True)
            if self._engine.dialect.name == "sqlite":

                @event.listens_for(self._engine, "connect")
                def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                    cur = dbapi_conn.cursor()
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                    cur.close()

            create_tables(_Base.metadata, self._engine)
        except Exception as e:  # sqlalchemy raises many kinds; all mean "store unavailable"
            raise StoreError(f"cannot open the feedback store: {e}") from e
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _session(self) -> Session:
        if self._engine is None:
            self.open()
        return Session(self._engine, expire_on_commit=False)

    def add(self, events: list[FeedbackEvent]) -> int:
        """Store events (those whose ``event_id`` is already stored are skipped); returns how many were new."""
        for attempt in range(3):
            try:
                return self._add_once(events)
            except IntegrityError as e:  # a concurrent writer stored some of these ids first: re-check them
                if attempt == 2:
                    raise StoreError(f"feedback kept conflicting with concurrent writers: {e}") from e
        raise AssertionError("unreachable")

    def _add_once(self, events: list[FeedbackEvent]) -> int:
        from sqlalchemy.exc import IntegrityError

        now = time.time()
        rows = [(e.event_id or uuid.uuid4().hex, e) for e in events]
        for attempt in range(5):
            try:
                with self._session() as db, db.begin():
                    ids = [eid for eid, _ in rows]
                    known = set(db.scalars(select(_Event.id).where(_Event.id.in_(ids))).all())
                    added = 0
                    for eid, e in rows:
                        if eid in known:
                            continue
                        known.add(eid)
                        db.add(_Event(id=eid, user_id=e.user_id, item_id=e.item_id, kind=e.kind, ts=e.ts or now))
                        added += 1
                return added
            except IntegrityError:  # a concurrent writer stored some of these ids first: re-check
                if attempt == 4:
                    raise StoreError("feedback events kept colliding with concurrent writers") from None
        return 0

    def user(self, user_id: str) -> UserFeedback:
        """A user's positives and skips in arrival order (a later play undoes an earlier skip and vice versa)."""
        with self._session() as db:
            rows = db.execute(
                select(_Event.item_id, _Event.kind).where(_Event.user_id == user_id).order_by(_Event.seq)
            ).all()
        last: dict[str, str] = {}
        for item, kind in rows:
            last.pop(item, None)
            last[item] = kind
        return UserFeedback([i for i, k in last.items() if k in POSITIVE], [i for i, k in last.items() if k == "skip"])

    def positives(self) -> list[tuple[str, str, float]]:
        """Every positive event as ``(user_id, item_id, ts)`` (for the next training run)."""
        with self._session() as db:
            rows = db.execute(
                select(_Event.user_id, _Event.item_id, _Event.ts).where(_Event.kind.in_(POSITIVE)).order_by(_Event.seq)
            ).all()
        return [(u, i, float(t)) for u, i, t in rows]

    def count(self) -> int:
        """How many events are stored."""
        with self._session() as db:
            return int(db.scalar(select(func.count()).select_from(_Event)) or 0)
