"""Retention: expired sessions, hand-offs and events are deleted by a task the API's lifespan runs;
stored messages are capped; one-off OpenAI calls store nothing; anonymous callers are rate-limited."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.settings import load_settings
from apps.customer_service.sessions import SessionStore
from apps.sentiment.store import EventRecord, SentimentStore
from tests.conftest import local_client

DAY = 86_400


def _event(i: int) -> EventRecord:
    return EventRecord(
        id=f"ev-{i}", ts=1_700_000_000 + i, source="test", text=f"text {i}", label="negative",
        probabilities={"negative": 0.8, "neutral": 0.1, "positive": 0.1}, topics=[], entities=[],
        scopes=[("company", "co:A")],
    )  # fmt: skip


def _stores(db: Path) -> tuple[SessionStore, SentimentStore]:
    """Two sessions, two hand-offs, two events and two finished deliveries: one of each 100 days old."""
    sessions = SessionStore(f"sqlite:///{db}").open()
    for sid in ("old", "new"):
        sessions.append(sessions.load(sid), "hi", "hello", None, failed=False)
        sessions.record_handoff(sid, "complaint", "a human please")
    store = SentimentStore(f"sqlite:///{db}").open()
    store.add_events([_event(0), _event(1)])
    for i in range(2):
        store.enqueue_delivery(f"a{i}", "http://127.0.0.1:9/hook", "alert.fired", {"i": i})
    for d in store.deliveries():
        store.record_attempt(d.id, ok=True)
    past = time.time() - 100 * DAY
    with sqlite3.connect(db) as c:  # age one of each, past the stores' API
        c.execute("UPDATE cs_sessions SET updated = ? WHERE id = 'old'", (past,))
        c.execute("UPDATE cs_handoffs SET ts = ? WHERE session_id = 'old'", (past,))
        c.execute("UPDATE sentiment_events SET ingested = ? WHERE id = 'ev-0'", (past,))
        c.execute("UPDATE sentiment_webhook_deliveries SET updated = ? WHERE alert_id = 'a0'", (past,))
    return sessions, store


def _counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        tables = ("cs_sessions", "cs_turns", "cs_handoffs", "sentiment_events", "sentiment_mentions",
                  "sentiment_webhook_deliveries")  # fmt: skip
        return {t: c.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_expire_once_deletes_what_is_past_retention(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from apps.core.retention import expire_once

    db = tmp_path / "state.sqlite"
    sessions, store = _stores(db)
    services = SimpleNamespace(
        customer_service=SimpleNamespace(sessions=sessions), sentiment=SimpleNamespace(store=store)
    )
    cfg = load_settings().retention
    assert (cfg.sessions_days, cfg.handoffs_days, cfg.events_days) == (30, 30, 90)
    assert expire_once(services, cfg) == {"sessions": 1, "handoffs": 1, "events": 1, "deliveries": 1}
    assert _counts(db) == {"cs_sessions": 1, "cs_turns": 2, "cs_handoffs": 1, "sentiment_events": 1,
                           "sentiment_mentions": 1, "sentiment_webhook_deliveries": 1}  # fmt: skip
    assert [t.content for t in sessions.load("new").turns] == ["hi", "hello"]
    assert expire_once(services, cfg) == {"sessions": 0, "handoffs": 0, "events": 0, "deliveries": 0}
    sessions.close()
    store.close()


def test_the_api_lifespan_runs_the_expiry_task(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from starlette.testclient import TestClient

    from apps.core.services import Services
    from apps.main import create_app

    db = tmp_path / "state.sqlite"
    sessions, store = _stores(db)
    settings = load_settings(home=tmp_path, models={"load_generator": False, "load_embedder": False},
                             database_url=f"sqlite:///{db}", auth={"keys_path": tmp_path / "keys.sqlite"})  # fmt: skip
    services = Services(settings=settings, customer_service=SimpleNamespace(sessions=sessions),
                        sentiment=SimpleNamespace(store=store))  # fmt: skip
    with TestClient(create_app(settings, services=services)):
        deadline = time.time() + 20
        while _counts(db)["cs_sessions"] != 1 or _counts(db)["sentiment_events"] != 1:
            assert time.time() < deadline, _counts(db)
            time.sleep(0.05)
    assert _counts(db)["cs_handoffs"] == 1
    sessions.close()
    store.close()


def test_stored_messages_are_capped(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = SessionStore(f"sqlite:///{db}", max_chars=100).open()
    store.append(store.load("s"), "x" * 5000, "y" * 50, None, failed=False)
    store.record_handoff("s", "complaint", "z" * 5000)
    turns = store.load("s").turns
    assert [len(t.content) for t in turns] == [100, 50] and turns[0].content.endswith("…")
    assert len(store.handoffs()[0]["message"]) == 100
    store.close()
    assert load_settings().retention.max_message_chars == 4000


def test_openai_calls_without_user_store_no_session(nogen_service: Any) -> None:
    db = Path(nogen_service.services.settings.database_url.removeprefix("sqlite:///"))
    before = _counts(db)["cs_sessions"]
    q = {"model": "customer-service", "messages": [{"role": "user", "content": "how do I get a refund?"}]}
    for _ in range(3):
        r = httpx.post(f"{nogen_service.url}/v1/chat/completions", json=q, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"]
    assert _counts(db)["cs_sessions"] == before
    # without a key, a `user` of the caller's choosing names nothing (404, nothing stored); a server-issued one is kept
    named = httpx.post(f"{nogen_service.url}/v1/chat/completions", json={**q, "user": "retention-named"}, timeout=60)
    assert named.status_code == 404 and _counts(db)["cs_sessions"] == before
    issued = httpx.post(f"{nogen_service.url}/cs/sessions", timeout=60).json()["session_id"]
    kept = httpx.post(f"{nogen_service.url}/v1/chat/completions", json={**q, "user": issued}, timeout=60)
    assert kept.status_code == 200 and _counts(db)["cs_sessions"] == before + 1
    # the one-off id cannot be used to resume anything: it is outside the session-id alphabet
    oneoff = r.json()["kgnlp"]["session_id"]
    again = httpx.post(f"{nogen_service.url}/v1/chat/completions", json={**q, "user": oneoff}, timeout=60)
    assert again.status_code == 422


@pytest.mark.parametrize(
    ("host", "given", "expected"),
    [
        ("0.0.0.0", None, "60/minute"),  # reachable from others: limited by default
        ("127.0.0.1", None, None),  # loopback (auth is off there too): the operator's own requests
        ("0.0.0.0", "none", None),
        ("127.0.0.1", "5/second", "5/second"),
    ],
)
def test_default_anonymous_rate_limit(host: str, given: str | None, expected: str | None) -> None:
    limits = {"anonymous_rate": given} if given is not None else {}
    assert load_settings(server={"host": host}, limits=limits).limits.anonymous_rate == expected


def test_anonymous_callers_of_a_reachable_server_are_limited_by_default(tmp_path: Path) -> None:
    from apps.core.services import build_services
    from apps.main import create_app

    settings = load_settings(home=tmp_path, server={"host": "0.0.0.0"}, auth={"enabled": False},
                             models={"load_generator": False, "load_embedder": False})  # fmt: skip
    with local_client(create_app(settings, services=build_services(settings))) as client:
        codes = [client.get("/v1/models").status_code for _ in range(61)]
    assert codes[:60] == [200] * 60 and codes[60] == 429
