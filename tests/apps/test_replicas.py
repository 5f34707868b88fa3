"""Two ``kgnlp serve`` replicas, and one service with ``--workers 2``, on one ``KGNLP_HOME``, one
PostgreSQL database and one Redis: keys, rate limits, corpus documents, adapters and webhook
deliveries behave as one service. Real processes, real HTTP, real servers (``.ci/run`` starts
PostgreSQL and Redis); the replicas load the real default models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.pg import postgres_url, redis_url

__all__ = ["postgres_url", "redis_url"]  # fixtures

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

NOTES = [
    {"id": "n1", "text": "The staff canteen serves lunch from noon until two in the afternoon."},
    {"id": "n2", "text": "Visitors must sign in at the front desk and wear a badge at all times."},
]


class Receiver:
    """A webhook receiver: records every POST; holds the connection open for the ids told to hang."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []  # (X-Kgnlp-Delivery, body)
        self.hang: set[str] = set()  # alert ids whose first delivery attempt never gets an answer
        recv = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                recv.received.append((self.headers["X-Kgnlp-Delivery"], body))
                if body["alert"]["id"] in recv.hang:
                    recv.hang.discard(body["alert"]["id"])
                    time.sleep(30)  # the sender is killed meanwhile
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self, alert_id: str) -> list[str]:
        return [d for d, body in self.received if body["alert"]["id"] == alert_id]


def _home(model_home: Path, root: Path, embedder_path: Path) -> Path:
    """A home that shares the built models (links) but has its own corpora, adapters and state."""
    from kg.registry import GraphRegistry
    from kg.store import Entity
    from models.loading import load_sentence_embedder
    from retrieval.corpus import build_corpus

    home = root / "home"
    (home / "graphs").mkdir(parents=True)
    for entry in model_home.iterdir():
        if entry.name not in ("indexes", "adapters", "graphs") and not entry.name.endswith((".sqlite", ".lock")):
            (home / entry.name).symlink_to(entry)
    for graph in (model_home / "graphs").iterdir():
        (home / "graphs" / graph.name).symlink_to(graph)
    embedder = load_sentence_embedder(embedder_path)
    for name, docs in (("notes", NOTES), ("linked", NOTES)):
        src = root / name
        src.mkdir()
        (src / "documents.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
        with GraphRegistry(home / "graphs") as graphs:
            if name == "linked":  # a corpus with a graph of its own: its updates write to the graph
                graphs.get(name, create=True).upsert([Entity("place:canteen", "Place", "staff canteen")])
            build_corpus(name, home, embedder, source=src, graphs=graphs)
    return home


def _serve(env: dict[str, str], port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", "from apps.cli import main; main()", "serve", "--port", str(port),
           "--workers", str(workers)]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-4000:]
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout} s: {log.read_text()[-4000:]}")


def _eventually(check: Callable[[], bool], within: float, step: float = 0.1) -> float:
    """Seconds until ``check()`` held (AssertionError after ``within``)."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > within:
            raise AssertionError(f"not true within {within} s")
        time.sleep(step)
    return time.monotonic() - t0


class Topology:
    def __init__(self, urls: list[str], procs: list[subprocess.Popen[bytes]], admin: str, receiver: Receiver,
                 database_url: str, home: Path) -> None:  # fmt: skip
        self.urls, self.procs, self.receiver, self.database_url, self.home = urls, procs, receiver, database_url, home
        self.admin = {"Authorization": f"Bearer {admin}"}

    def retrieve(self, url: str, query: str) -> list[str]:
        r = httpx.post(f"{url}/retrieve", json={"query": query, "k": 1, "corpus": "notes"}, headers=self.admin,
                       timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text
        return [e["source_id"] for e in r.json()["evidence"]]


def _topology(model_home: Path, embedder_path: Path, root: Path, database_url: str, redis: str,
              workers: int) -> Iterator[Topology]:  # fmt: skip
    from apps.core.keystore import KeyStore

    home = _home(model_home, root, embedder_path)
    receiver = Receiver()
    env = {
        **os.environ,
        "KGNLP_HOME": str(home),
        "KGNLP_DATABASE_URL": database_url,
        "KGNLP_LIMITS__STORAGE_URI": redis,
        "KGNLP_AUTH__ENABLED": "true",
        "KGNLP_RETRIEVAL__CORPORA": '["notes", "linked"]',
        "KGNLP_CUSTOMER_SERVICE__ENABLED": "false",
        "KGNLP_RECOMMEND__ENABLED": "false",
        "KGNLP_SENTIMENT__WEBHOOK_URLS": json.dumps([receiver.url]),
        "KGNLP_SENTIMENT__WEBHOOK_LEASE_S": "6",
        "KGNLP_SERVER__RELOAD_POLL_S": "0.5",
    }
    with KeyStore(database_url) as keys:  # the operator's first key, as `kgnlp keys create` makes it
        _, admin = keys.create("operator", "admin")
    ports = [free_port()] if workers > 1 else [free_port(), free_port()]
    logs = [root / f"serve-{p}.log" for p in ports]
    procs = [_serve(env, p, log, workers) for p, log in zip(ports, logs, strict=True)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc, log in zip(urls, procs, logs, strict=True):
            _wait_ready(url, proc, log)
        yield Topology(urls if workers == 1 else urls * 2, procs, admin, receiver, database_url, home)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        receiver.server.shutdown()


@pytest.fixture
def replicas(model_home: Path, embedder_path: Path, tmp_path: Path, postgres_url: str,
             redis_url: str) -> Iterator[Topology]:  # fmt: skip
    from tests.apps.conftest import _ensure_sentiment

    _ensure_sentiment(model_home)
    yield from _topology(model_home, embedder_path, tmp_path, postgres_url, redis_url, workers=1)


@pytest.fixture
def two_workers(model_home: Path, embedder_path: Path, tmp_path: Path, postgres_url: str,
                redis_url: str) -> Iterator[Topology]:  # fmt: skip
    from tests.apps.conftest import _ensure_sentiment

    _ensure_sentiment(model_home)
    yield from _topology(model_home, embedder_path, tmp_path, postgres_url, redis_url, workers=2)


def _check_keys_and_limits(t: Topology) -> None:
    a, b = t.urls[0], t.urls[1]
    r = httpx.post(f"{a}/admin/keys", json={"name": "bot", "scopes": ["read"], "rate_limit": "4/minute"},
                   headers=t.admin, timeout=10)  # fmt: skip
    assert r.status_code == 201, r.text
    key, key_id = r.json()["token"], r.json()["id"]
    bot = {"Authorization": f"Bearer {key}"}
    ask = {"query": "lunch", "k": 1, "corpus": "notes"}
    statuses = []
    for url in (a, b, a, b, a):  # one limit across both: the fifth request is over it
        statuses.append(httpx.post(f"{url}/retrieve", json=ask, headers=bot, timeout=10))
    assert [s.status_code for s in statuses] == [200, 200, 200, 200, 429], [s.text for s in statuses]
    assert int(statuses[-1].headers["Retry-After"]) >= 1
    assert httpx.delete(f"{a}/admin/keys/{key_id}", headers=t.admin, timeout=10).status_code == 200
    refused_at = time.monotonic()
    r = httpx.post(f"{b}/retrieve", json=ask, headers=bot, timeout=10)
    assert r.status_code == 401 and time.monotonic() - refused_at < 1.0, r.text


def _check_documents(t: Topology) -> None:
    a, b = t.urls[0], t.urls[1]
    doc = {"documents": [{"id": "n3", "text": "The car park closes at midnight and opens again at six."}]}
    r = httpx.post(f"{a}/admin/corpora/notes/documents", json=doc, headers=t.admin, timeout=60)
    assert r.status_code == 200, r.text
    assert t.retrieve(a, "when does the car park close") == ["n3"]  # the writer answers from it at once
    took = _eventually(lambda: t.retrieve(b, "when does the car park close") == ["n3"], within=10, step=0.25)
    assert took < 10
    r = httpx.delete(f"{b}/admin/corpora/notes/documents/n3", headers=t.admin, timeout=60)
    assert r.status_code == 200, r.text
    _eventually(lambda: t.retrieve(a, "when does the car park close") != ["n3"], within=10, step=0.25)


def _check_adapter(t: Topology, shipped: Path) -> None:
    a, b = t.urls[0], t.urls[1]
    ask = {"model": "customer_service", "max_tokens": 4, "temperature": 0,
           "messages": [{"role": "user", "content": "Where is my order?"}]}  # fmt: skip
    assert httpx.post(f"{b}/v1/chat/completions", json=ask, headers=t.admin, timeout=60).status_code == 404
    r = httpx.post(f"{a}/admin/adapters", json={"name": "customer_service", "path": str(shipped)},
                   headers=t.admin, timeout=300)  # fmt: skip
    assert r.status_code == 201, r.text
    assert (t.home / "adapters" / "customer_service" / "adapter_config.json").is_file()  # published
    _eventually(
        lambda: httpx.post(f"{b}/v1/chat/completions", json=ask, headers=t.admin, timeout=120).status_code == 200,
        within=120, step=1,
    )  # fmt: skip
    r = httpx.delete(f"{b}/admin/adapters/customer_service", headers=t.admin, timeout=60)
    assert r.status_code == 200, r.text
    _eventually(
        lambda: httpx.post(f"{a}/v1/chat/completions", json=ask, headers=t.admin, timeout=60).status_code == 404,
        within=10, step=0.25,
    )  # fmt: skip


def _enqueue(t: Topology, alert_id: str) -> None:
    """Queue an alert's webhook as the monitor of whichever replica saw it would."""
    from apps.sentiment.store import AlertRow, SentimentStore
    from apps.sentiment.webhooks import WebhookDispatcher

    store = SentimentStore(t.database_url).open()
    try:
        alert = AlertRow(alert_id, "z", "company", "company:AAA", "open", 0, 3600, None, 5.0, 3.0, 1, {})
        WebhookDispatcher(store, [t.receiver.url]).enqueue(alert, "alert.fired")
    finally:
        store.close()


def _check_webhooks_exactly_once(t: Topology) -> None:
    ids = [f"once-{i}" for i in range(6)]
    for alert_id in ids:
        _enqueue(t, alert_id)
    _eventually(lambda: all(t.receiver.ids(i) for i in ids), within=30, step=0.25)
    time.sleep(3)  # time for a duplicate to show up, if any
    assert {i: len(t.receiver.ids(i)) for i in ids} == dict.fromkeys(ids, 1)


def _claimer_pid(t: Topology, alert_id: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(t.database_url)
    try:
        with engine.connect() as c:
            owner = c.execute(text("SELECT claimed_by FROM sentiment_webhook_deliveries WHERE alert_id = :a"),
                              {"a": alert_id}).scalar_one()  # fmt: skip
    finally:
        engine.dispose()
    return int(owner.split(":")[1])  # host:pid:nonce


def test_two_replicas_behave_as_one_service(replicas: Topology) -> None:
    from apps.customer_service.adapter import SHIPPED

    t = replicas
    _check_keys_and_limits(t)
    _check_documents(t)
    _check_adapter(t, SHIPPED)
    _check_webhooks_exactly_once(t)

    # the replica holding a delivery's lease dies mid-attempt: the other one delivers it
    t.receiver.hang.add("orphan")
    _enqueue(t, "orphan")
    _eventually(lambda: len(t.receiver.ids("orphan")) == 1, within=30, step=0.1)
    pid = _claimer_pid(t, "orphan")
    victim = next(p for p in t.procs if p.pid == pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    _eventually(lambda: len(t.receiver.ids("orphan")) == 2, within=30, step=0.25)  # lease (6 s) + a poll
    first, second = t.receiver.ids("orphan")
    assert first == second  # the same delivery, attempted again by the survivor, not a new one
    time.sleep(2)
    assert len(t.receiver.ids("orphan")) == 2


def test_two_workers_behave_as_one_service(two_workers: Topology) -> None:
    t = two_workers  # both "replicas" are the one port: the kernel spreads connections over the workers
    _check_keys_and_limits(t)
    _check_webhooks_exactly_once(t)
    # a corpus without a graph takes documents through any worker, and every worker answers from it
    doc = {"documents": [{"id": "n4", "text": "Bicycles may be parked in the courtyard rack only."}]}
    r = httpx.post(f"{t.urls[0]}/admin/corpora/notes/documents", json=doc, headers=t.admin, timeout=60)
    assert r.status_code == 200, r.text
    _eventually(lambda: all(t.retrieve(t.urls[0], "where can I park my bike") == ["n4"] for _ in range(6)),
                within=10, step=0.25)  # fmt: skip
    # an embedded graph is read-only under several workers: a corpus update that writes to its graph
    # is a clear 409 that says what to do, never a 500, and changes nothing
    doc = {"documents": [{"id": "n5", "text": "The staff canteen is closed on Sundays."}]}
    r = httpx.post(f"{t.urls[0]}/admin/corpora/linked/documents", json=doc, headers=t.admin, timeout=60)
    assert r.status_code == 409 and "Neo4j" in r.json()["error"]["message"], r.text
    r = httpx.post(f"{t.urls[0]}/retrieve", json={"query": "canteen sundays", "k": 3, "corpus": "linked"},
                   headers=t.admin, timeout=30)  # fmt: skip
    assert "n5" not in [e["source_id"] for e in r.json()["evidence"]]
