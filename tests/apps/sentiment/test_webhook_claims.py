"""Several dispatchers on one delivery table (workers, replicas, ``kgnlp sentiment replay``): each
delivery is claimed with a lease and POSTed exactly once; a claimer that dies is taken over after
its lease expires. On SQLite and on PostgreSQL (``postgres`` marker)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from apps.sentiment.store import AlertRow, SentimentStore
from apps.sentiment.webhooks import WebhookDispatcher
from tests.apps.sentiment.test_webhooks import SECRET, Receiver
from tests.pg import postgres_url

__all__ = ["postgres_url"]  # the fixture, re-exported for pytest

N_ALERTS = 30


def _alert(i: int) -> AlertRow:
    return AlertRow(f"a-{i}", "z", "company", f"company:C{i}", "open", 0, 3600, None, 5.0, 3.0, 1, {"summary": "x"})


def _two_dispatchers_deliver_each_once(url: str) -> None:
    a, b = SentimentStore(url).open(), SentimentStore(url).open()  # two replicas' stores
    rx = Receiver()
    da = WebhookDispatcher(a, [rx.url], secret=SECRET, backoff_s=0.05)
    db = WebhookDispatcher(b, [rx.url], secret=SECRET, backoff_s=0.05)
    try:
        for i in range(N_ALERTS):
            da.enqueue(_alert(i), "alert.fired")
        go = threading.Barrier(2)
        counts: dict[str, int] = {}

        def run(d: WebhookDispatcher) -> None:
            go.wait()
            n = 0
            while True:
                got = d.deliver_due()
                if not got:
                    break
                n += got
            counts[d.owner] = n

        threads = [threading.Thread(target=run, args=(d,)) for d in (da, db)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        ids = Counter(body["alert"]["id"] for body, ok, _ in rx.received if ok)
        assert len(rx.received) == N_ALERTS, "each alert POSTed exactly once"
        assert ids == Counter({f"a-{i}": 1 for i in range(N_ALERTS)})
        assert sum(counts.values()) == N_ALERTS
        assert len(a.deliveries("delivered", limit=1000)) == N_ALERTS
        assert a.deliveries("pending") == []
    finally:
        da.close()
        db.close()
        rx.close()
        a.close()
        b.close()


def _dead_claimer_taken_over(url: str) -> None:
    a, b = SentimentStore(url).open(), SentimentStore(url).open()
    rx = Receiver()
    dead = WebhookDispatcher(a, [rx.url], secret=SECRET, timeout_s=0.2, lease_s=0.5)
    alive = WebhookDispatcher(b, [rx.url], secret=SECRET, timeout_s=0.2, lease_s=0.5)
    try:
        dead.enqueue(_alert(1), "alert.fired")
        # the first dispatcher claims and "dies" before sending
        claimed = a.claim_deliveries(dead.owner, time.time(), dead.lease_s)
        assert [d.alert_id for d in claimed] == ["a-1"]
        assert alive.deliver_due() == 0, "a held lease is not taken"
        assert rx.received == []
        time.sleep(dead.lease_s + 0.1)
        assert alive.deliver_due() == 1, "an expired lease is taken over"
        assert [body["alert"]["id"] for body, _, _ in rx.received] == ["a-1"]
        assert [d.status for d in b.deliveries()] == ["delivered"]
        # the dead claimer coming back cannot overwrite what the other one recorded
        assert a.record_attempt(claimed[0].id, ok=False, error="late", owner=dead.owner) is False
        assert [d.status for d in b.deliveries()] == ["delivered"]
    finally:
        dead.close()
        alive.close()
        rx.close()
        a.close()
        b.close()


def test_two_dispatchers_deliver_each_alert_once_sqlite(tmp_path: Path) -> None:
    _two_dispatchers_deliver_each_once(f"sqlite:///{tmp_path / 'w.sqlite'}")


def test_dead_claimer_lease_expires_sqlite(tmp_path: Path) -> None:
    _dead_claimer_taken_over(f"sqlite:///{tmp_path / 'w.sqlite'}")


@pytest.mark.postgres
def test_two_dispatchers_deliver_each_alert_once_postgres(postgres_url: str) -> None:
    _two_dispatchers_deliver_each_once(postgres_url)


@pytest.mark.postgres
def test_dead_claimer_lease_expires_postgres(postgres_url: str) -> None:
    _dead_claimer_taken_over(postgres_url)


def test_old_delivery_table_gains_claim_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as c:
        c.execute(
            "CREATE TABLE sentiment_webhook_deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id VARCHAR(36) "
            "NOT NULL, url TEXT NOT NULL, event VARCHAR(32) NOT NULL, payload TEXT NOT NULL, status VARCHAR(16) "
            "NOT NULL, attempts INTEGER NOT NULL, next_attempt FLOAT NOT NULL, last_error TEXT, created FLOAT NOT "
            "NULL, updated FLOAT NOT NULL)"
        )
        c.execute(
            "INSERT INTO sentiment_webhook_deliveries (alert_id, url, event, payload, status, attempts, next_attempt,"
            " created, updated) VALUES ('a-1', 'http://127.0.0.1:9/x', 'alert.fired', '{}', 'pending', 0, 0, 0, 0)"
        )
    s = SentimentStore(f"sqlite:///{path}").open()
    try:
        got = s.claim_deliveries("me", time.time(), 60)
        assert [d.alert_id for d in got] == ["a-1"]
        assert s.claim_deliveries("other", time.time(), 60) == []
    finally:
        s.close()


def test_webhook_lease_setting_reaches_the_dispatcher(tmp_path: Path) -> None:
    from apps.core.settings import load_settings
    from apps.sentiment.service import build_service

    settings = load_settings(
        home=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
        sentiment={"webhook_urls": ["http://127.0.0.1:9/hook"], "webhook_lease_s": 17.5},
    )
    assert load_settings(home=tmp_path).sentiment.webhook_lease_s == 60.0  # the default
    service = build_service(settings, embedder=None, graphs=None, classifier=None)  # the models load lazily
    try:
        assert service.dispatcher is not None and service.dispatcher.lease_s == 17.5
    finally:
        service.close()


def test_webhook_lease_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.core.settings import load_settings
    from kgnlp.errors import ConfigurationError

    monkeypatch.setenv("KGNLP_SENTIMENT__WEBHOOK_LEASE_S", "0")
    with pytest.raises(ConfigurationError, match=r"KGNLP_SENTIMENT__WEBHOOK_LEASE_S='0'.*greater than or equal to 5"):
        load_settings()
    monkeypatch.setenv("KGNLP_SENTIMENT__WEBHOOK_LEASE_S", "4.9")
    with pytest.raises(ConfigurationError, match="WEBHOOK_LEASE_S"):
        load_settings()
    monkeypatch.setenv("KGNLP_SENTIMENT__WEBHOOK_LEASE_S", "5")
    assert load_settings().sentiment.webhook_lease_s == 5.0
