"""Webhook delivery against a real local HTTP receiver: signatures, retries, dead letters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.sentiment.store import AlertRow, SentimentStore
from apps.sentiment.webhooks import SIGNATURE_HEADER, WebhookDispatcher, sign, verify

SECRET = "s3cret"


class Receiver:
    """Answers ``fail_first`` requests with 500, then 204; records what it got and whether it verified."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict, bool, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(SECRET, self.headers.get(SIGNATURE_HEADER, ""), body)
                outer.received.append((json.loads(body), ok, dict(self.headers)))
                status = 500 if len(outer.received) <= outer.fail_first else (204 if ok else 401)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SentimentStore]:
    s = SentimentStore(f"sqlite:///{tmp_path / 'w.sqlite'}").open()
    yield s
    s.close()


def alert() -> AlertRow:
    return AlertRow("a-1", "z", "company", "company:AAA", "open", 0, 3600, None, 5.0, 3.0, 1, {"summary": "x"})


def test_sign_and_verify() -> None:
    body = b'{"a": 1}'
    header = sign(SECRET, body, 1_700_000_000)
    assert verify(SECRET, header, body, now=1_700_000_010)
    assert not verify(SECRET, header, body + b" ", now=1_700_000_010)  # tampered body
    assert not verify("other", header, body, now=1_700_000_010)  # wrong key
    assert not verify(SECRET, header, body, now=1_700_000_000 + 3600)  # stale: a replay
    assert not verify(SECRET, "garbage", body)


def wait_for(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_retries_with_backoff_until_delivered(store: SentimentStore) -> None:
    rx = Receiver(fail_first=2)
    d = WebhookDispatcher(store, [rx.url], SECRET, max_attempts=5, backoff_s=0.05).start()
    try:
        d.enqueue(alert(), "alert.fired")
        wait_for(lambda: store.deliveries("delivered"))
    finally:
        d.close()
        rx.close()
    assert len(rx.received) == 3 and all(ok for _, ok, _ in rx.received)
    payload, _, headers = rx.received[-1]
    assert payload["event"] == "alert.fired" and payload["alert"]["key"] == "company:AAA"
    assert headers["X-Kgnlp-Event"] == "alert.fired"
    (row,) = store.deliveries()
    assert row.status == "delivered" and row.attempts == 3 and row.last_error is None


def test_dead_letter_after_max_attempts(store: SentimentStore) -> None:
    rx = Receiver(fail_first=100)
    d = WebhookDispatcher(store, [rx.url], SECRET, max_attempts=3, backoff_s=0.05).start()
    try:
        d.enqueue(alert(), "alert.fired")
        wait_for(lambda: store.deliveries("dead"))
    finally:
        d.close()
        rx.close()
    (row,) = store.deliveries("dead")
    assert row.attempts == 3 and row.last_error == "HTTP 500"
    assert len(rx.received) == 3


def test_unreachable_receiver_and_restart_resumes_pending(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.sqlite'}"
    store = SentimentStore(db).open()
    rx = Receiver()
    url = rx.url
    rx.close()  # nobody listens: connection refused
    d = WebhookDispatcher(store, [url], SECRET, max_attempts=10, backoff_s=0.05)
    d.enqueue(alert(), "alert.fired")
    assert d.deliver_due() == 1
    (row,) = store.deliveries()
    assert row.status == "pending" and row.attempts == 1 and "ConnectError" in (row.last_error or "")
    d.close()
    store.close()
    # a new process (new store, new dispatcher) picks the pending delivery up
    rx2 = Receiver()
    store2 = SentimentStore(db).open()
    with store2.engine.begin() as c:  # point the stored delivery at the live receiver
        from sqlalchemy import update

        from apps.sentiment.store import deliveries

        c.execute(update(deliveries).values(url=rx2.url))
    d2 = WebhookDispatcher(store2, [rx2.url], SECRET, backoff_s=0.05).start()
    try:
        wait_for(lambda: store2.deliveries("delivered"))
    finally:
        d2.close()
        rx2.close()
        store2.close()
    assert len(rx2.received) == 1 and rx2.received[0][1]
