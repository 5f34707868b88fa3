"""The SQL stores against a real PostgreSQL server (``KGNLP_TEST_POSTGRES_URL``; ``.ci/run`` provides one).

Each test gets a fresh database. The same code runs on SQLite in the fast suite; these tests
pin what differs on PostgreSQL: server-side parameters, integer division, concurrent writers,
unique violations inside transactions, JSON columns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from apps.customer_service.sessions import Conversation, SessionStore
from apps.sentiment.store import AlertRow, EventRecord, SentimentStore
from tests.pg import postgres_url

pytestmark = pytest.mark.postgres
__all__ = ["postgres_url"]  # the fixture, re-exported for pytest


def _event(i: int, ts: int, label: str = "negative", scopes: list[tuple[str, str]] | None = None) -> EventRecord:
    return EventRecord(
        id=f"ev-{i}",
        ts=ts,
        source="test",
        text=f"text {i} \u00e9\u4e2d",
        label=label,
        probabilities={"negative": 0.8, "neutral": 0.1, "positive": 0.1},
        topics=["earnings"],
        entities=[{"id": "co:AAPL", "name": "Apple"}],
        scopes=scopes if scopes is not None else [("company", "co:AAPL"), ("sector", "tech"), ("company", "co:AAPL")],
    )


@pytest.fixture()
def sentiment(postgres_url: str) -> Iterator[SentimentStore]:
    store = SentimentStore(postgres_url).open()
    assert store.engine.dialect.name == "postgresql"
    yield store
    store.close()


def test_sentiment_ingest_is_idempotent(sentiment: SentimentStore) -> None:
    first = sentiment.add_events([_event(0, 1000), _event(1, 1010), _event(1, 1010)])
    assert first.inserted == ["ev-0", "ev-1"] and first.duplicates == ["ev-1"]
    again = sentiment.add_events([_event(0, 1000), _event(2, 1020)])
    assert again.inserted == ["ev-2"] and again.duplicates == ["ev-0"]
    assert sentiment.count_events() == 3
    assert sentiment.latest_ts() == 1020
    # duplicated scopes of one event count once; every event has its mentions
    assert sentiment.scope_counts("company", ["co:AAPL"], 0, 10_000) == {"co:AAPL": (3, 3)}
    assert sentiment.scope_counts("sector", ["tech", "energy"], 0, 10_000) == {"tech": (3, 3)}
    texts = sentiment.driving_texts("company", "co:AAPL", 0, 10_000)
    assert [t["id"] for t in texts] == ["ev-0", "ev-1", "ev-2"] and texts[0]["text"] == "text 0 \u00e9\u4e2d"


def test_sentiment_concurrent_writers_store_each_event_once(sentiment: SentimentStore) -> None:
    batch = [_event(i, 2000 + i) for i in range(60)]
    errors: list[BaseException] = []
    results = []
    barrier = threading.Barrier(4)

    def write() -> None:
        try:
            barrier.wait()
            results.append(sentiment.add_events(batch))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(len(r.inserted) for r in results) == 60
    assert sentiment.count_events() == 60
    assert sentiment.scope_counts("company", ["co:AAPL"], 0, 10_000) == {"co:AAPL": (60, 60)}


@pytest.mark.parametrize("bucket", [60, 300, 3600])
def test_sentiment_timeline_buckets_use_integer_division(sentiment: SentimentStore, bucket: int) -> None:
    base = 1_735_689_600  # 2025-01-01T00:00:00Z, a multiple of every bucket above
    stamps = [base, base + 1, base + bucket - 1, base + bucket, base + 3 * bucket + 7]
    labels = ["negative", "neutral", "positive", "negative", "negative"]
    sentiment.add_events([_event(i, ts, lab) for i, (ts, lab) in enumerate(zip(stamps, labels, strict=True))])
    series = sentiment.timeline("company", "co:AAPL", base, base + 4 * bucket, bucket)
    assert [b.start for b in series] == [base + k * bucket for k in range(4)]
    assert [(b.n, b.negative, b.neutral, b.positive) for b in series] == [
        (3, 1, 1, 1),
        (1, 1, 0, 0),
        (0, 0, 0, 0),
        (1, 1, 0, 0),
    ]
    assert series[0].negative_share == pytest.approx(1 / 3)
    # an unaligned window still reports aligned buckets and only events inside it
    part = sentiment.timeline("company", "co:AAPL", base + 1, base + bucket + 1, bucket)
    assert [(b.start, b.n) for b in part] == [(base, 2), (base + bucket, 1)]


def _alert(started: int, status: str = "open", peak: float = 0.7) -> AlertRow:
    return AlertRow(
        id="", rule="neg_share", scope="company", key="co:AAPL", status=status, started=started, fired=started + 60,
        resolved=None if status == "open" else started + 600, peak=peak, limit=0.5, breach_buckets=2,
        explanation={"why": "negative share 0.7 > 0.5", "texts": ["\u00fc"]},
    )  # fmt: skip


def test_sentiment_alert_upsert_and_ack(sentiment: SentimentStore) -> None:
    stored, change = sentiment.upsert_alert(_alert(1000))
    assert change == "alert.fired" and stored.id
    same, change = sentiment.upsert_alert(_alert(1000, peak=0.9))
    assert change is None and same.id == stored.id and same.peak == 0.9
    lower, _ = sentiment.upsert_alert(_alert(1000, peak=0.6))
    assert lower.peak == 0.9  # the peak never goes down
    assert sentiment.open_alert("neg_share", "company", "co:AAPL") is not None
    done, change = sentiment.upsert_alert(_alert(1000, status="resolved"))
    assert change == "alert.resolved" and done.status == "resolved"
    assert sentiment.open_alert("neg_share", "company", "co:AAPL") is None
    second, change = sentiment.upsert_alert(_alert(5000))
    assert change == "alert.fired" and second.id != stored.id
    assert [a.started for a in sentiment.list_alerts()] == [5000, 1000]
    assert [a.id for a in sentiment.list_alerts(status="resolved")] == [stored.id]
    acked = sentiment.ack_alert(stored.id, "looked at it")
    assert acked.ack_note == "looked at it" and acked.acked_at is not None
    found = sentiment.find_alert("neg_share", "company", "co:AAPL", 1000)
    assert found is not None and found.explanation["texts"] == ["\u00fc"]


def test_sentiment_webhook_deliveries(sentiment: SentimentStore) -> None:
    stored, _ = sentiment.upsert_alert(_alert(1000))
    sentiment.enqueue_delivery(stored.id, "http://127.0.0.1:9/hook", "alert.fired", {"id": stored.id})
    sentiment.enqueue_delivery(stored.id, "http://127.0.0.1:9/other", "alert.fired", {"id": stored.id})
    now = time.time() + 1
    due = sentiment.due_deliveries(now)
    assert len(due) == 2 and all(d.status == "pending" and d.attempts == 0 for d in due)
    assert sentiment.next_due() is not None
    sentiment.record_attempt(due[0].id, ok=False, error="connection refused", retry_at=now + 3600)
    sentiment.record_attempt(due[1].id, ok=True)
    assert sentiment.due_deliveries(now) == []
    later = sentiment.due_deliveries(now + 7200)
    assert [(d.id, d.attempts, d.last_error) for d in later] == [(due[0].id, 1, "connection refused")]
    sentiment.record_attempt(due[0].id, ok=False, error="gone")
    assert [d.status for d in sentiment.deliveries()] == ["delivered", "dead"]
    assert sentiment.next_due() is None


def test_session_store_roundtrip_window_delete(postgres_url: str) -> None:
    store = SessionStore(postgres_url, window=4).open()
    try:
        conv = store.load("s-1")
        assert conv.turns == [] and conv.slots == {}
        for i in range(3):
            conv = store.load("s-1")
            conv.slots["order_id"] = f"ORD-{i}"
            store.append(conv, f"question {i} \u00e9", f"answer {i}", "track_order", failed=i == 2)
        conv = store.load("s-1")
        assert [t.content for t in conv.turns] == ["question 1 \u00e9", "answer 1", "question 2 \u00e9", "answer 2"]
        assert conv.slots == {"order_id": "ORD-2"} and conv.failures == 1
        store.record_handoff("s-1", "complaint", "I want a human")
        store.record_handoff("s-2", "low_confidence", "??")
        assert [h["session_id"] for h in store.handoffs()] == ["s-2", "s-1"]
        assert store.delete("s-1") is True
        assert store.load("s-1").turns == []
        assert [h["session_id"] for h in store.handoffs()] == ["s-2"]
        assert store.delete("s-1") is False
    finally:
        store.close()


def test_session_store_owners_and_an_old_database(postgres_url: str) -> None:
    """Tables of the release before owners: ``open`` adds the owner columns (twice is harmless); the
    old rows are the local owner's; two owners' sessions of one id stay apart."""
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as c:
        c.execute(
            text(
                "CREATE TABLE cs_sessions (id VARCHAR(128) PRIMARY KEY, created FLOAT NOT NULL, "
                "updated FLOAT NOT NULL, slots JSON NOT NULL, failures INTEGER NOT NULL)"
            )
        )
        c.execute(
            text(
                "CREATE TABLE cs_handoffs (id SERIAL PRIMARY KEY, session_id VARCHAR(128) NOT NULL, "
                "reason VARCHAR(64) NOT NULL, message TEXT NOT NULL, ts FLOAT NOT NULL)"
            )
        )
        c.execute(
            text("INSERT INTO cs_sessions VALUES ('s-1', :t, :t, '{\"order_id\": \"ORD-1\"}', 0)"), {"t": time.time()}
        )
        c.execute(text("INSERT INTO cs_handoffs (session_id, reason, message, ts) VALUES ('s-1', 'complaint', 'x', 1)"))
    engine.dispose()
    for _ in range(2):
        SessionStore(postgres_url).open().close()
    store = SessionStore(postgres_url).open()
    try:
        assert store.load("s-1").slots == {"order_id": "ORD-1"} and not store.load("s-1", "key:a").exists
        assert store.handoffs()[0]["owner"] == ""
        for owner, order in (("key:a", "A"), ("key:b", "B")):
            conv = store.load("s-1", owner)
            conv.slots = {"order_id": order}
            store.append(conv, "q", "a", None, failed=False)
            store.record_handoff("s-1", "complaint", "x", owner)
        assert [store.load("s-1", o).slots["order_id"] for o in ("", "key:a", "key:b")] == ["ORD-1", "A", "B"]
        assert store.delete("s-1", "key:a") and not store.load("s-1", "key:a").exists
        assert sorted(h["owner"] for h in store.handoffs()) == ["", "key:b"]
    finally:
        store.close()


def test_session_store_expiry(postgres_url: str) -> None:
    store = SessionStore(postgres_url, ttl_s=0.2).open()
    try:
        store.append(Conversation("old"), "hi", "hello", None, failed=False)
        time.sleep(0.4)
        store.append(Conversation("new"), "hi", "hello", None, failed=False)
        assert store.load("old").turns == []  # expired on read
        assert store.expire() == 1
        assert len(store.load("new").turns) == 2
        # an expired session id can be reused: it starts afresh
        store.append(Conversation("new"), "again", "ok", None, failed=False)
    finally:
        store.close()


def test_session_store_concurrent_turns(postgres_url: str) -> None:
    """Eight clients talking in ONE session at once, its first turns included: no turn fails or is lost.

    Three rounds, each on a new session id, so the race on the session's first row is run three times.
    """
    store = SessionStore(postgres_url, window=100).open()
    clients, turns = 8, 5
    try:
        for r in range(3):
            sid = f"shared-{r}"
            errors: list[BaseException] = []
            barrier = threading.Barrier(clients)

            def talk(n: int, sid: str = sid, errors: list[BaseException] = errors, barrier: Any = barrier) -> None:
                try:
                    barrier.wait()
                    for i in range(turns):
                        store.append(store.load(sid), f"q{n}-{i}", f"a{n}-{i}", None, failed=False)
                except BaseException as e:
                    errors.append(e)

            threads = [threading.Thread(target=talk, args=(n,)) for n in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            asked = [t.content for t in store.load(sid).turns if t.role == "user"]
            assert sorted(asked) == sorted(f"q{n}-{i}" for n in range(clients) for i in range(turns))
            for n in range(clients):  # each client's turns in the order it sent them
                assert [q for q in asked if q.startswith(f"q{n}-")] == [f"q{n}-{i}" for i in range(turns)]
    finally:
        store.close()


def test_recommend_feedback_store(postgres_url: str) -> None:
    from apps.recommend.feedback import FeedbackEvent, FeedbackStore

    store = FeedbackStore(postgres_url).open()
    try:
        events = [
            FeedbackEvent("u1", "item:a", "play", event_id="e1", ts=1.0),
            FeedbackEvent("u1", "item:b", "skip", event_id="e2", ts=2.0),
            FeedbackEvent("u1", "item:a", "skip", event_id="e3", ts=3.0),
            FeedbackEvent("u1", "item:b", "click", event_id="e4", ts=4.0),
        ]
        assert store.add(events) == 4
        assert store.add(events[:2]) == 0  # a retried POST stores nothing
        assert store.add([FeedbackEvent("u2", "item:c", "play")]) == 1  # no id: always new
        profile = store.user("u1")
        assert profile.positives == ["item:b"] and profile.skips == ["item:a"]
        assert store.positives() == [
            ("u1", "item:a", 1.0),
            ("u1", "item:b", 4.0),
            ("u2", "item:c", pytest.approx(time.time(), abs=60)),
        ]
        assert store.count() == 5
    finally:
        store.close()


def test_recommend_feedback_concurrent_retries(postgres_url: str) -> None:
    """Clients retrying the same events at once: each event is stored once and no writer fails."""
    from apps.recommend.feedback import FeedbackEvent, FeedbackStore

    store = FeedbackStore(postgres_url).open()
    batch = [FeedbackEvent("u1", f"item:{i}", "play", event_id=f"e{i}") for i in range(30)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        try:
            barrier.wait()
            store.add(batch)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert not errors, errors
        assert store.count() == 30
    finally:
        store.close()
