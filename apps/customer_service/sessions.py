"""Conversation memory per session id, in SQL (SQLite by default, any SQLAlchemy URL such as PostgreSQL).

Keeps a window of recent turns, the slots extracted so far and a count of failed turns,
expires idle sessions, records hand-offs for the operator, and deletes a user's data on request.

Every session belongs to an owner, and a session id names a session only within its owner:
``key:<api key id>`` for a caller with an API key, :data:`ANONYMOUS` for callers without one
(who continue only sessions the server issued them an unguessable id for), :data:`LOCAL` for
in-process callers (the CLI, benchmarks; also the owner of rows stored before owners were
recorded). The row's primary key is :func:`storage_key` of the pair, so two owners' "alice"
are two conversations, and no caller can reach another owner's session by naming its id.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Table, Text, delete, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

__all__ = [
    "ANONYMOUS",
    "EPHEMERAL_PREFIX",
    "LOCAL",
    "Conversation",
    "SessionStore",
    "Turn",
    "owner_of_key",
    "storage_key",
]

# Session ids that start with this are one-off (an OpenAI call without ``user``): their turns are
# never stored. Clients cannot choose such an id: "~" is outside the session-id alphabet.
EPHEMERAL_PREFIX = "anon~"
# owners: callers without an API key (their session ids are issued by the server), and in-process
# callers (CLI, benchmarks, tests of the store; rows stored before owners were recorded are theirs)
ANONYMOUS = "anon"
LOCAL = ""


def owner_of_key(key_id: str | None) -> str:
    """The owner of the sessions of a caller with API key ``key_id`` (None: no key, :data:`ANONYMOUS`)."""
    return f"key:{key_id}" if key_id else ANONYMOUS


def storage_key(owner: str, session_id: str) -> str:
    """The primary key of ``owner``'s session ``session_id``: the id itself for :data:`LOCAL` (so rows
    stored before owners were recorded stay the operator's), else a SHA-256 of owner and id (64
    characters, within the column's 128 whatever the id's length)."""
    if owner == LOCAL:
        return session_id
    return hashlib.sha256(f"{owner}\n{session_id}".encode()).hexdigest()


class _Base(DeclarativeBase):
    pass


class _Session(_Base):
    __tablename__ = "cs_sessions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # storage_key(owner, session id)
    owner: Mapped[str] = mapped_column(String(64), default=LOCAL, server_default=LOCAL)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float, index=True)
    slots: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class _Turn(_Base):
    __tablename__ = "cs_turns"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("cs_sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    intent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ts: Mapped[float] = mapped_column(Float)


class _Handoff(_Base):
    __tablename__ = "cs_handoffs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(128), index=True)  # as the owner names it
    owner: Mapped[str] = mapped_column(String(64), default=LOCAL, server_default=LOCAL)
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    ts: Mapped[float] = mapped_column(Float)


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    intent: str | None = None


@dataclass
class Conversation:
    session_id: str
    turns: list[Turn] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    failures: int = 0
    owner: str = LOCAL
    exists: bool = False  # the owner has this session stored (and not expired)


# columns added after the first release: created on an older database when it is opened
_ADDED_COLUMNS = {"cs_sessions": ["owner"], "cs_handoffs": ["owner"]}


def _add_missing_columns(engine: Any) -> None:
    from apps.core.db import add_missing_columns

    add_missing_columns(engine, _Base.metadata, _ADDED_COLUMNS, "''")


class SessionStore:
    """SQL-backed conversation memory.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.sqlite`` or ``postgresql+psycopg://…``).
        window: turns kept in a conversation's context.
        ttl_s: sessions idle longer than this are expired (deleted by ``expire``; ignored on read).
        mask: applied to every stored text (turns, hand-off messages), e.g. ``apps.core.pii.mask_pii``;
            with it, slots are stored masked too (``apps.core.pii.mask_slots``: a name or email as its
            placeholder, order and invoice references kept) and the turn's name and email are
            masked wherever its texts repeat them. The turn in progress works on the real values;
            later turns see only what was stored, and ``load`` leaves masked slots out (a placeholder
            carries nothing an answer could use).
        max_chars: stored turn and hand-off texts are cut to this many characters (after masking,
            so a cut never splits an email or card number into an unmasked piece), marked with "…".
    """

    def __init__(
        self,
        url: str,
        window: int = 8,
        ttl_s: float = 24 * 3600,
        mask: Callable[[str], str] | None = None,
        max_chars: int = 4000,
    ) -> None:
        self.url = url
        self.mask = mask
        self.max_chars = max_chars
        self.window = window
        self.ttl_s = ttl_s
        self._engine: Any = None

    def open(self) -> SessionStore:
        """Connect and create tables (SQLite in WAL mode with foreign keys)."""
        from apps.core.db import open_engine
        from kgnlp.errors import StoreError

        self._engine = open_engine(self.url, _Base.metadata, "session store")
        try:
            _add_missing_columns(self._engine)
        except Exception as e:
            raise StoreError(f"cannot add the owner columns to the session store: {e}") from e
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _m(self, text: str, slots: dict[str, str] | None = None) -> str:
        if self.mask is not None:
            from apps.core.pii import mask_known

            text = self.mask(mask_known(text, slots) if slots else text)
        return text if len(text) <= self.max_chars else text[: self.max_chars - 1] + "…"

    def _stored_slots(self, slots: dict[str, str]) -> dict[str, Any]:
        if self.mask is None:
            return dict(slots)
        from apps.core.pii import mask_slots

        return mask_slots(slots, self.mask)

    def _session(self) -> Session:
        if self._engine is None:
            self.open()
        return Session(self._engine, expire_on_commit=False)

    def load(self, session_id: str, owner: str = LOCAL) -> Conversation:
        """``owner``'s conversation ``session_id`` so far (empty, ``exists`` false, when new or expired)."""
        key = storage_key(owner, session_id)
        with self._session() as db:
            row = db.get(_Session, key)
            if row is None or time.time() - row.updated > self.ttl_s:
                return Conversation(session_id, owner=owner)
            turns = db.scalars(
                select(_Turn).where(_Turn.session_id == key).order_by(_Turn.id.desc()).limit(self.window)
            ).all()
            from apps.core.pii import PLACEHOLDERS

            return Conversation(
                session_id,
                [Turn(t.role, t.content, t.intent) for t in reversed(turns)],
                {k: v for k, v in (row.slots or {}).items() if v not in PLACEHOLDERS},
                row.failures,
                owner,
                exists=True,
            )

    def _insert(self, db: Session, key: str, owner: str, now: float) -> None:
        """Insert-or-keep the session row (first turns of one session in parallel all succeed)."""
        from apps.core.db import insert_or_ignore

        new_row = {"id": key, "owner": owner, "created": now, "updated": now, "slots": {}, "failures": 0}
        table = cast(Table, _Session.__table__)
        db.execute(insert_or_ignore(self._engine.dialect.name, table, ["id"]).values(**new_row))

    def create(self, session_id: str, owner: str) -> None:
        """Store an empty session (a server-issued id that ``owner`` continues with); one that exists is kept."""
        with self._session() as db, db.begin():
            self._insert(db, storage_key(owner, session_id), owner, time.time())

    def append(self, conv: Conversation, user: str, assistant: str, intent: str | None, failed: bool) -> None:
        """Record one exchange and the updated slots, in one transaction."""
        if conv.session_id.startswith(EPHEMERAL_PREFIX):
            return  # a one-off conversation: nothing to remember it by
        now = time.time()
        key = storage_key(conv.owner, conv.session_id)
        with self._session() as db, db.begin():
            # insert-or-keep before any read: first turns of one session in parallel all succeed
            # (a read-then-insert raced into a unique violation), and SQLite takes its write lock here
            self._insert(db, key, conv.owner, now)
            row = db.get(_Session, key, with_for_update=True)  # PostgreSQL: one turn at a time
            if row is None:  # deleted between the two statements (a concurrent delete); store nothing
                return
            if now - row.updated > self.ttl_s:  # idle past the TTL: start afresh under the same id
                db.execute(delete(_Turn).where(_Turn.session_id == key))
                row.created = now
            row.updated = now
            row.slots = json.loads(json.dumps(self._stored_slots(conv.slots)))
            row.failures = conv.failures + 1 if failed else 0
            db.add_all(
                [
                    _Turn(session_id=key, role="user", content=self._m(user, conv.slots), intent=intent, ts=now),
                    _Turn(
                        session_id=key, role="assistant", content=self._m(assistant, conv.slots), intent=intent, ts=now
                    ),
                ]
            )

    def record_handoff(self, session_id: str, reason: str, message: str, owner: str = LOCAL) -> None:
        with self._session() as db, db.begin():
            db.add(
                _Handoff(session_id=session_id, owner=owner, reason=reason, message=self._m(message), ts=time.time())
            )

    def handoffs(self, limit: int = 100) -> list[dict[str, Any]]:
        """Recent hand-offs, newest first, each with the session id as its owner names it and the owner."""
        with self._session() as db:
            rows = db.scalars(select(_Handoff).order_by(_Handoff.id.desc()).limit(limit)).all()
            return [
                {"session_id": r.session_id, "owner": r.owner, "reason": r.reason, "message": r.message, "ts": r.ts}
                for r in rows
            ]

    def delete(self, session_id: str, owner: str = LOCAL) -> bool:
        """Delete everything stored about ``owner``'s session (turns, slots, hand-offs); another owner's
        session of the same id is untouched. True if anything existed."""
        key = storage_key(owner, session_id)
        with self._session() as db, db.begin():
            n = 0
            for stmt in (
                delete(_Turn).where(_Turn.session_id == key),
                delete(_Handoff).where(_Handoff.session_id == session_id, _Handoff.owner == owner),
                delete(_Session).where(_Session.id == key),
            ):
                result: Any = db.execute(stmt)
                n += result.rowcount
            return bool(n)

    def expire(self, idle_s: float | None = None) -> int:
        """Delete sessions idle longer than ``idle_s`` (default: the TTL) with their turns; returns how many."""
        cutoff = time.time() - (self.ttl_s if idle_s is None else idle_s)
        with self._session() as db, db.begin():
            old = select(_Session.id).where(_Session.updated < cutoff).scalar_subquery()
            db.execute(delete(_Turn).where(_Turn.session_id.in_(old)))
            result: Any = db.execute(delete(_Session).where(_Session.updated < cutoff))
            return int(result.rowcount)

    def expire_handoffs(self, older_than_s: float) -> int:
        """Delete hand-off records older than ``older_than_s``; returns how many."""
        with self._session() as db, db.begin():
            result: Any = db.execute(delete(_Handoff).where(_Handoff.ts < time.time() - older_than_s))
            return int(result.rowcount)
