"""Durable state of the sentiment app: events, their per-scope mentions, alerts, webhook deliveries.

SQL through SQLAlchemy Core (SQLite in WAL mode by default, PostgreSQL by URL). Every
write is one transaction; event ingest is idempotent on the event id. Buckets are not
materialised: a series is a ``GROUP BY ts // bucket`` over the indexed mentions table,
so any bucket width can be asked for and a replay cannot leave counts half-updated.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from apps.core.db import add_missing_columns, insert_or_ignore, open_engine
from kgnlp.errors import NotFoundError, StoreError

__all__ = ["AlertRow", "Delivery", "EventRecord", "IngestResult", "SentimentStore", "TimelineBucket"]

_meta = MetaData()

events = Table(
    "sentiment_events",
    _meta,
    Column("id", String(128), primary_key=True),
    Column("ts", BigInteger, nullable=False, index=True),
    Column("source", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("label", String(8), nullable=False),
    Column("p_negative", Float, nullable=False),
    Column("p_neutral", Float, nullable=False),
    Column("p_positive", Float, nullable=False),
    Column("topics", JSON, nullable=False),
    Column("entities", JSON, nullable=False),
    Column("ingested", Float, nullable=False),
)

mentions = Table(
    "sentiment_mentions",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(128), ForeignKey("sentiment_events.id", ondelete="CASCADE"), nullable=False),
    Column("scope", String(16), nullable=False),  # company | sector | topic
    Column("key", String(128), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("label", String(8), nullable=False),
    Index("ix_sentiment_mentions_scope_key_ts", "scope", "key", "ts"),
)

alerts = Table(
    "sentiment_alerts",
    _meta,
    Column("id", String(36), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("key", String(128), nullable=False),
    Column("status", String(16), nullable=False, index=True),  # open | resolved
    Column("started", BigInteger, nullable=False),
    Column("fired", BigInteger, nullable=False),
    Column("resolved", BigInteger, nullable=True),
    Column("peak", Float, nullable=False),
    Column("limit", Float, nullable=False),
    Column("breach_buckets", Integer, nullable=False),
    Column("explanation", JSON, nullable=False),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    Column("acked_at", Float, nullable=True),
    Column("ack_note", Text, nullable=True),
    UniqueConstraint("rule", "scope", "key", "started", name="uq_sentiment_alert_episode"),
)

deliveries = Table(
    "sentiment_webhook_deliveries",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), nullable=False, index=True),
    Column("url", Text, nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # pending | delivered | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("updated", Float, nullable=False),
    # the dispatcher holding this delivery's lease (while it sends, ``next_attempt`` is the lease's end)
    Column("claimed_by", String(64), nullable=True),
)


@dataclass(frozen=True)
class EventRecord:
    """A classified event ready to store; ``scopes`` are the (scope, key) pairs it counts towards."""

    id: str
    ts: int
    source: str
    text: str
    label: str
    probabilities: dict[str, float]
    topics: list[str]
    entities: list[dict[str, Any]]
    scopes: list[tuple[str, str]]


@dataclass(frozen=True)
class IngestResult:
    inserted: list[str]
    duplicates: list[str]


@dataclass(frozen=True)
class TimelineBucket:
    start: int
    n: int
    negative: int
    neutral: int
    positive: int

    @property
    def negative_share(self) -> float:
        return self.negative / self.n if self.n else 0.0


@dataclass
class AlertRow:
    id: str
    rule: str
    scope: str
    key: str
    status: str
    started: int
    fired: int
    resolved: int | None
    peak: float
    limit: float
    breach_buckets: int
    explanation: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    acked_at: float | None = None
    ack_note: str | None = None


@dataclass(frozen=True)
class Delivery:
    id: int
    alert_id: str
    url: str
    event: str
    payload: str
    status: str
    attempts: int
    next_attempt: float
    last_error: str | None


class SentimentStore:
    """Events, mentions, alerts and webhook deliveries in one SQL database.

    Args:
        url: SQLAlchemy URL (``sqlite:///…`` or ``postgresql+psycopg://…``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Any = None

    def open(self) -> SentimentStore:
        engine = open_engine(self.url, _meta, "sentiment store")
        _add_missing_columns(engine)
        self._engine = engine
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self.open()
        return self._engine

    # ------------------------------------------------------------------ events
    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        found: set[str] = set()
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                found.update(c.scalars(select(events.c.id).where(events.c.id.in_(ids[i : i + 500]))))
        return found

    def add_events(self, records: Sequence[EventRecord]) -> IngestResult:
        """Store new events and their mentions in one transaction; known ids are duplicates.

        Raises:
            StoreError: the database failed (nothing of the batch is stored).
        """
        for attempt in range(2):
            seen = self.existing_ids(r.id for r in records)
            fresh: list[EventRecord] = []
            dupes: list[EventRecord] = []
            for r in records:
                (dupes if r.id in seen else fresh).append(r)
                seen.add(r.id)
            try:
                with self.engine.begin() as c:
                    if fresh:
                        now = time.time()
                        c.execute(insert(events), [_event_row(r, now) for r in fresh])
                        rows = [
                            {"event_id": r.id, "scope": s, "key": k, "ts": r.ts, "label": r.label}
                            for r in fresh
                            for s, k in dict.fromkeys(r.scopes)
                        ]
                        if rows:
                            c.execute(insert(mentions), rows)
                return IngestResult([r.id for r in fresh], [r.id for r in dupes])
            except IntegrityError:
                if attempt:  # a concurrent writer inserted some ids first: re-check once
                    raise StoreError("event ingest kept conflicting with a concurrent writer") from None
            except SQLAlchemyError as e:
                raise StoreError(f"event ingest failed: {e}") from e
        raise AssertionError("unreachable")

    def expire(self, older_than_s: float) -> tuple[int, int]:
        """Delete events stored more than ``older_than_s`` ago (with their mentions) and finished webhook
        deliveries last attempted that long ago (their payloads quote texts).

        Returns:
            ``(events, deliveries)`` deleted.
        """
        cutoff = time.time() - older_than_s
        with self.engine.begin() as c:
            old = select(events.c.id).where(events.c.ingested < cutoff).scalar_subquery()
            c.execute(delete(mentions).where(mentions.c.event_id.in_(old)))
            n_events = c.execute(delete(events).where(events.c.ingested < cutoff)).rowcount
            done = and_(deliveries.c.status.in_(("delivered", "dead")), deliveries.c.updated < cutoff)
            n_deliveries = c.execute(delete(deliveries).where(done)).rowcount
        return int(n_events), int(n_deliveries)

    def mentions_of(self, event_ids: Iterable[str]) -> list[tuple[str, str, int]]:
        """``(scope, key, ts)`` of stored events' mentions (to re-evaluate what they touched)."""
        ids = list(event_ids)
        out: list[tuple[str, str, int]] = []
        with self.engine.connect() as c:
            for i in range(0, len(ids), 500):
                q = select(mentions.c.scope, mentions.c.key, mentions.c.ts).where(
                    mentions.c.event_id.in_(ids[i : i + 500])
                )
                out += [(s, k, int(ts)) for s, k, ts in c.execute(q)]
        return out

    def count_events(self) -> int:
        with self.engine.connect() as c:
            return int(c.scalar(select(func.count()).select_from(events)) or 0)

    def latest_ts(self) -> int | None:
        with self.engine.connect() as c:
            v = c.scalar(select(func.max(events.c.ts)))
            return int(v) if v is not None else None

    def timeline(self, scope: str, key: str, start: int, end: int, bucket_s: int) -> list[TimelineBucket]:
        """Counts per bucket for ``start <= ts < end``, empty buckets included (aligned to ``bucket_s``)."""
        bk = (mentions.c.ts // bucket_s).label("bk")
        q = (
            select(
                bk,
                func.count(),
                func.sum(case((mentions.c.label == "negative", 1), else_=0)),
                func.sum(case((mentions.c.label == "neutral", 1), else_=0)),
            )
            .where(and_(mentions.c.scope == scope, mentions.c.key == key, mentions.c.ts >= start, mentions.c.ts < end))
            .group_by(bk)
        )
        with self.engine.connect() as c:
            counts = {int(b): (int(n), int(neg or 0), int(neu or 0)) for b, n, neg, neu in c.execute(q)}
        out = []
        for b in range(start // bucket_s, (end - 1) // bucket_s + 1):
            n, neg, neu = counts.get(b, (0, 0, 0))
            out.append(TimelineBucket(b * bucket_s, n, neg, neu, n - neg - neu))
        return out

    def scope_counts(self, scope: str, keys: Sequence[str], start: int, end: int) -> dict[str, tuple[int, int]]:
        """``key -> (texts, negative texts)`` in ``[start, end)`` for several keys of one scope."""
        if not keys:
            return {}
        q = (
            select(mentions.c.key, func.count(), func.sum(case((mentions.c.label == "negative", 1), else_=0)))
            .where(
                and_(
                    mentions.c.scope == scope,
                    mentions.c.key.in_(list(keys)),
                    mentions.c.ts >= start,
                    mentions.c.ts < end,
                )
            )
            .group_by(mentions.c.key)
        )
        with self.engine.connect() as c:
            return {k: (int(n), int(neg or 0)) for k, n, neg in c.execute(q)}

    def driving_texts(self, scope: str, key: str, start: int, end: int, limit: int = 5) -> list[dict[str, Any]]:
        """The most negative texts of a scope in ``[start, end)``."""
        q = (
            select(events.c.id, events.c.ts, events.c.source, events.c.text, events.c.p_negative)
            .join(mentions, mentions.c.event_id == events.c.id)
            .where(and_(mentions.c.scope == scope, mentions.c.key == key, mentions.c.ts >= start, mentions.c.ts < end))
            .where(mentions.c.label == "negative")
            .order_by(events.c.p_negative.desc(), events.c.ts)
            .limit(limit)
        )
        with self.engine.connect() as c:
            return [
                {"id": i, "ts": int(ts), "source": s, "text": t, "p_negative": round(float(p), 4)}
                for i, ts, s, t, p in c.execute(q)
            ]

    # ------------------------------------------------------------------ alerts
    def upsert_alert(self, alert: AlertRow) -> tuple[AlertRow, str | None]:
        """Insert a new episode or update the stored one (same rule, scope, key, start).

        Returns:
            the stored alert and what changed for subscribers: ``"alert.fired"`` for a new
            alert, ``"alert.resolved"`` when it just resolved, otherwise None.
        """
        now = time.time()
        episode = and_(
            alerts.c.rule == alert.rule,
            alerts.c.scope == alert.scope,
            alerts.c.key == alert.key,
            alerts.c.started == alert.started,
        )
        with self.engine.begin() as c:
            # insert-or-keep first: concurrent evaluations of one new episode all succeed (a
            # read-then-insert raced into the unique constraint) and exactly one reports it fired
            fresh = {**_alert_values(alert), "id": alert.id or str(uuid.uuid4()), "created": now, "updated": now}
            key = ["rule", "scope", "key", "started"]
            stmt = insert_or_ignore(c.dialect.name, alerts, key).values(**fresh).returning(alerts.c.id)
            if c.execute(stmt).first() is not None:  # (psycopg reports no rowcount here: RETURNING tells)
                alert.id, alert.created, alert.updated = fresh["id"], now, now
                return alert, "alert.fired"
            row = c.execute(select(alerts).where(episode).with_for_update()).first()
            if row is None:  # only a concurrent delete could do this; no API deletes alerts
                raise StoreError(f"alert episode {alert.rule}/{alert.scope}/{alert.key}@{alert.started} vanished")
            stored = _alert(row._mapping)
            change = "alert.resolved" if stored.status == "open" and alert.status == "resolved" else None
            # a resolved episode is final: an evaluation on an older view of the events (another
            # worker or replica, committing late) must not reopen it, or it would resolve twice
            final = stored.status == "resolved"
            values: dict[str, Any] = {
                "status": stored.status if final else alert.status,
                "resolved": stored.resolved if final else alert.resolved,
                "peak": max(stored.peak, alert.peak),
                "breach_buckets": alert.breach_buckets,
                "updated": now,
            }
            if alert.explanation:
                values["explanation"] = alert.explanation
            c.execute(update(alerts).where(alerts.c.id == stored.id).values(**values))
            for k, v in values.items():
                setattr(stored, k, v)
            return stored, change

    def find_alert(self, rule: str, scope: str, key: str, started: int) -> AlertRow | None:
        with self.engine.connect() as c:
            row = c.execute(
                select(alerts).where(
                    and_(
                        alerts.c.rule == rule, alerts.c.scope == scope, alerts.c.key == key, alerts.c.started == started
                    )
                )
            ).first()
        return _alert(row._mapping) if row else None

    def open_alert(self, rule: str, scope: str, key: str) -> AlertRow | None:
        with self.engine.connect() as c:
            row = c.execute(
                select(alerts).where(
                    and_(alerts.c.rule == rule, alerts.c.scope == scope, alerts.c.key == key, alerts.c.status == "open")
                )
            ).first()
        return _alert(row._mapping) if row else None

    def get_alert(self, alert_id: str) -> AlertRow:
        with self.engine.connect() as c:
            row = c.execute(select(alerts).where(alerts.c.id == alert_id)).first()
        if row is None:
            raise NotFoundError(f"no alert with id {alert_id!r}")
        return _alert(row._mapping)

    def list_alerts(
        self, status: str | None = None, scope: str | None = None, key: str | None = None, limit: int = 100
    ) -> list[AlertRow]:
        q = select(alerts)
        if status:
            q = q.where(alerts.c.status == status)
        if scope:
            q = q.where(alerts.c.scope == scope)
        if key:
            q = q.where(alerts.c.key == key)
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(alerts.c.fired.desc(), alerts.c.id).limit(limit)).all()
        return [_alert(r._mapping) for r in rows]

    def ack_alert(self, alert_id: str, note: str | None) -> AlertRow:
        self.get_alert(alert_id)
        with self.engine.begin() as c:
            c.execute(update(alerts).where(alerts.c.id == alert_id).values(acked_at=time.time(), ack_note=note))
        return self.get_alert(alert_id)

    # -------------------------------------------------------------- deliveries
    def enqueue_delivery(self, alert_id: str, url: str, event: str, payload: dict[str, Any]) -> None:
        now = time.time()
        with self.engine.begin() as c:
            c.execute(
                insert(deliveries).values(
                    alert_id=alert_id, url=url, event=event, payload=json.dumps(payload, sort_keys=True),
                    status="pending", attempts=0, next_attempt=now, created=now, updated=now,
                )
            )  # fmt: skip

    def due_deliveries(self, now: float, limit: int = 50) -> list[Delivery]:
        q = (
            select(deliveries)
            .where(and_(deliveries.c.status == "pending", deliveries.c.next_attempt <= now))
            .order_by(deliveries.c.next_attempt, deliveries.c.id)
            .limit(limit)
        )
        with self.engine.connect() as c:
            return [_delivery(r._mapping) for r in c.execute(q)]

    def claim_deliveries(self, owner: str, now: float, lease_s: float, limit: int = 50) -> list[Delivery]:
        """Atomically take up to ``limit`` due deliveries for ``owner`` (a lease until ``now + lease_s``).

        One ``UPDATE … WHERE status='pending' AND next_attempt <= now … RETURNING``: a row is due when
        it is pending and its retry time (or the previous claimer's lease) has passed, so two
        dispatchers never hold one row at once, and a claimer that dies leaves a lease that expires.
        PostgreSQL picks candidates with ``FOR UPDATE SKIP LOCKED``; SQLite serialises writers.
        """
        due = and_(deliveries.c.status == "pending", deliveries.c.next_attempt <= now)
        pick = select(deliveries.c.id).where(due).order_by(deliveries.c.next_attempt, deliveries.c.id).limit(limit)
        with self.engine.begin() as c:
            if c.dialect.name == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            stmt = (
                update(deliveries)
                .where(and_(deliveries.c.id.in_(pick.scalar_subquery()), due))
                .values(claimed_by=owner, next_attempt=now + lease_s, updated=time.time())
                .returning(*deliveries.c)
            )
            rows = [_delivery(r._mapping) for r in c.execute(stmt)]
        return sorted(rows, key=lambda d: d.id)

    def next_due(self) -> float | None:
        with self.engine.connect() as c:
            v = c.scalar(select(func.min(deliveries.c.next_attempt)).where(deliveries.c.status == "pending"))
        return float(v) if v is not None else None

    def record_attempt(
        self,
        delivery_id: int,
        *,
        ok: bool,
        error: str | None = None,
        retry_at: float | None = None,
        owner: str | None = None,
    ) -> bool:
        """Record one delivery attempt: delivered, retried at ``retry_at``, or dead (no ``retry_at``).

        The lease is released. With ``owner``, only while ``owner`` still holds it (a dispatcher whose
        lease expired and was taken over records nothing). Returns whether the row was updated.
        """
        status = "delivered" if ok else ("pending" if retry_at is not None else "dead")
        cond = deliveries.c.id == delivery_id
        if owner is not None:
            cond = and_(cond, deliveries.c.claimed_by == owner, deliveries.c.status == "pending")
        with self.engine.begin() as c:
            n = c.execute(
                update(deliveries)
                .where(cond)
                .values(
                    status=status, attempts=deliveries.c.attempts + 1, last_error=error, claimed_by=None,
                    next_attempt=retry_at if retry_at is not None else time.time(), updated=time.time(),
                )
            ).rowcount  # fmt: skip
        return bool(n)

    def deliveries(self, status: str | None = None, limit: int = 100) -> list[Delivery]:
        q = select(deliveries)
        if status:
            q = q.where(deliveries.c.status == status)
        with self.engine.connect() as c:
            return [_delivery(r._mapping) for r in c.execute(q.order_by(deliveries.c.id.desc()).limit(limit))]


# columns added after the first release: created on an older database when it is opened
_ADDED_COLUMNS = {"sentiment_webhook_deliveries": ["claimed_by"]}


def _add_missing_columns(engine: Any) -> None:
    add_missing_columns(engine, _meta, _ADDED_COLUMNS, None)


def _event_row(r: EventRecord, now: float) -> dict[str, Any]:
    p = r.probabilities
    return {
        "id": r.id, "ts": r.ts, "source": r.source, "text": r.text, "label": r.label,
        "p_negative": p.get("negative", 0.0), "p_neutral": p.get("neutral", 0.0), "p_positive": p.get("positive", 0.0),
        "topics": r.topics, "entities": r.entities, "ingested": now,
    }  # fmt: skip


def _alert_values(a: AlertRow) -> dict[str, Any]:
    return {k: getattr(a, k) for k in AlertRow.__dataclass_fields__}


def _alert(m: Any) -> AlertRow:
    return AlertRow(**{k: m[k] for k in AlertRow.__dataclass_fields__})


def _delivery(m: Any) -> Delivery:
    return Delivery(**{k: m[k] for k in Delivery.__dataclass_fields__})
