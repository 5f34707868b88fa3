"""What error bodies and /health/ready tell a caller (issue #19 item 13), over real HTTP.

Server errors are generic for anyone but the operator (an admin key, or a request that needs no
key); the request id in the body finds the cause in the log. Public health shows status only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from apps.core.keystore import KeyStore
from apps.core.services import Component, build_services
from apps.core.settings import load_settings
from apps.main import create_app
from kgnlp.errors import ModelUnavailableError, StoreError
from tests.conftest import LiveServer

SECRET_PATH = "/srv/kgnlp-secret/state.sqlite"
SQL = "SELECT api_keys.hash FROM api_keys WHERE api_keys.id = ?"
REMOTE_URL = "http://ops:pw@10.1.2.3:8080/v1"


def _app(home: Path, **overrides: Any) -> Any:
    settings = load_settings(home=home, models={"load_generator": False, "load_embedder": False}, **overrides)
    return create_app(settings, services=build_services(settings))


def _sql_error() -> OperationalError:
    """What SQLAlchemy raises when the state file goes away: its text holds the SQL and our path."""
    return OperationalError(SQL, ("k1",), sqlite3.OperationalError(f"unable to open database file {SECRET_PATH}"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("disclosure")
    app = _app(home, auth={"enabled": True}, limits={"enabled": False})
    app.state.services.components["generator"] = Component(
        "generator", "ready", {"backend": "remote", "url": REMOTE_URL, "path": f"{home}/models/qwen"}
    )
    store: KeyStore = app.state.keys
    tokens = {s: store.create(f"{s}-key", s)[1] for s in ("read", "admin")}
    with LiveServer(app) as live:
        yield {"url": live.url, "app": app, "home": home, "tokens": tokens}
    store.close()


def _get(secured: dict[str, Any], path: str, scope: str | None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secured['tokens'][scope]}"} if scope else {}
    return httpx.get(secured["url"] + path, headers=headers, timeout=30, **kw)


class _Boom:
    """Raises ``exc`` from the graph registry (``where="registry"``) or from a store's queries."""

    def __init__(self) -> None:
        self.exc: BaseException = RuntimeError("unset")
        self.where = "store"

    def raise_(self, *_a: Any, **_k: Any) -> Any:
        raise self.exc


@pytest.fixture
def boom(secured: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> _Boom:
    b = _Boom()

    class FailingStore:
        get = find = neighbors = b.raise_

    def get_store(*_a: Any, **_k: Any) -> Any:
        if b.where == "registry":
            b.raise_()
        return FailingStore()

    monkeypatch.setattr(secured["app"].state.services.graphs, "get", get_store)
    return b


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{rec.getMessage()}\n{rec.exc_text or ''}" for rec in caplog.records) + caplog.text


def test_unexpected_500_is_generic_for_a_reader_and_logged_in_full(
    secured: dict[str, Any], boom: _Boom, caplog: pytest.LogCaptureFixture
) -> None:
    boom.exc = _sql_error()
    with caplog.at_level(logging.ERROR, logger="kgnlp.api"):
        r = _get(secured, "/kg/search?q=x&graph=finance", "read")
    assert r.status_code == 500
    body = r.json()
    assert SECRET_PATH not in r.text and "SELECT" not in r.text and "api_keys" not in r.text
    rid = body["request_id"]
    assert rid and rid in body["error"]["message"] and "operator" in body["error"]["message"]
    logged = _logged(caplog)
    assert rid in logged and SECRET_PATH in logged and "SELECT api_keys.hash" in logged


def test_store_error_500_is_generic_for_a_reader_and_detailed_for_an_admin(
    secured: dict[str, Any], boom: _Boom, caplog: pytest.LogCaptureFixture
) -> None:
    """A StoreError wrapping SQLAlchemy's text (as the stores raise it) reaches the KgnlpError handler."""
    boom.exc = StoreError(f"event ingest failed: {_sql_error()}")
    with caplog.at_level(logging.ERROR, logger="kgnlp.api"):
        reader = _get(secured, "/kg/search?q=x&graph=finance", "read")
        admin = _get(secured, "/kg/search?q=x&graph=finance", "admin")
    assert reader.status_code == admin.status_code == 500
    assert SECRET_PATH not in reader.text and "SELECT" not in reader.text
    assert reader.json()["request_id"] in reader.json()["error"]["message"]
    assert SECRET_PATH in admin.json()["error"]["message"] and "SELECT" in admin.json()["error"]["message"]
    logged = _logged(caplog)
    assert reader.json()["request_id"] in logged and SECRET_PATH in logged


def test_router_503_detail_is_redacted_for_a_reader(secured: dict[str, Any], boom: _Boom) -> None:
    """The graph router answers a StoreError with its own 503 that quotes it: paths go for a reader."""
    boom.where, boom.exc = "registry", StoreError(f"cannot open graph database {SECRET_PATH}: IO exception")
    reader = _get(secured, "/kg/entities/x?graph=finance", "read")
    assert reader.status_code == 503 and SECRET_PATH not in reader.text
    assert "unavailable: cannot open graph database <path>" in reader.json()["error"]["message"]
    admin = _get(secured, "/kg/entities/x?graph=finance", "admin")
    assert SECRET_PATH in admin.json()["error"]["message"]


def test_503_keeps_its_hint_but_not_its_paths(secured: dict[str, Any], boom: _Boom) -> None:
    boom.exc = ModelUnavailableError(
        f"no intent classifier at {SECRET_PATH}/cs/intents: [Errno 2] No such file (run kgnlp cs setup)"
    )
    r = _get(secured, "/kg/entities/x?graph=finance", "read")
    assert r.status_code == 503
    message = r.json()["error"]["message"]
    assert SECRET_PATH not in message and "no intent classifier at <path>" in message and "kgnlp cs setup" in message
    admin = _get(secured, "/kg/entities/x?graph=finance", "admin")
    assert SECRET_PATH in admin.json()["error"]["message"]


def test_remote_url_is_redacted_in_503s(secured: dict[str, Any], boom: _Boom) -> None:
    boom.exc = ModelUnavailableError(f"the remote generator at {REMOTE_URL} does not answer")
    r = _get(secured, "/kg/entities/x?graph=finance", "read")
    assert r.status_code == 503 and "10.1.2.3" not in r.text and "pw" not in r.text and "<url>" in r.text


def test_health_ready_is_status_only_without_an_admin_key(secured: dict[str, Any]) -> None:
    home = str(secured["home"])
    for scope in (None, "read"):
        r = _get(secured, "/health/ready", scope)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "ready"
        assert body["components"]["generator"] == {"status": "ready"}
        assert all(set(c) == {"status"} for c in body["components"].values())
        assert home not in r.text and "10.1.2.3" not in r.text
    bad = httpx.get(secured["url"] + "/health/ready", headers={"Authorization": "Bearer kgnlp_nope_x"})
    assert bad.status_code == 200 and "10.1.2.3" not in bad.text  # public: a bad key is no error, and no detail
    admin = _get(secured, "/health/ready", "admin").json()
    assert admin["components"]["generator"]["url"] == REMOTE_URL and home in admin["components"]["generator"]["path"]
    assert "available" in admin["components"]["graphs"]


def test_graph_provenance_names_the_graph_not_its_path(tmp_path: Path) -> None:
    from kg.ladybug_store import LadybugStore
    from kg.store import Entity, Relation

    with LadybugStore.open(tmp_path / "tiny") as store:
        store.upsert([Entity("a", "T", "A"), Entity("b", "T", "B")], [Relation("a", "R", "b", source="s")])
        prov = store.neighbors("a", hops=1).provenance
    assert prov == {"backend": "ladybug", "graph": "tiny", "sources": ["s"]}
    assert str(tmp_path) not in json.dumps(prov)


def test_operator_without_keys_gets_details(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Auth off (the loopback demo): every caller is the operator, as before."""
    app = _app(tmp_path, auth={"enabled": False})
    app.state.services.components["generator"] = Component("generator", "ready", {"url": REMOTE_URL})

    def boom(*_a: Any, **_k: Any) -> Any:
        raise _sql_error()

    monkeypatch.setattr(app.state.services.graphs, "get", boom)
    with LiveServer(app) as live:
        ready = httpx.get(live.url + "/health/ready").json()
        err = httpx.get(live.url + "/kg/entities/x?graph=finance")
    assert ready["components"]["generator"]["url"] == REMOTE_URL
    assert err.status_code == 500 and SECRET_PATH in err.json()["error"]["message"]
    app.state.keys.close()


def test_loopback_default_details_only_for_provably_local_requests(tmp_path: Path) -> None:
    """Auth ``local`` (the default on a loopback bind): a local request is the operator's; one relayed by a
    proxy (a forwarding header) is not, so public health shows it status only."""
    app = _app(tmp_path)
    app.state.services.components["generator"] = Component("generator", "ready", {"url": REMOTE_URL})
    with LiveServer(app) as live:
        local = httpx.get(live.url + "/health/ready").json()
        proxied = httpx.get(live.url + "/health/ready", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert local["components"]["generator"]["url"] == REMOTE_URL
    assert proxied["components"]["generator"] == {"status": "ready"}
    app.state.keys.close()


def test_redact() -> None:
    from apps.core.errors import redact

    assert redact("cannot open /home/op/.kgnlp/state.sqlite: gone") == "cannot open <path>: gone"
    assert redact("graph 'x' not found under ~/kg/graphs (build it)") == "graph 'x' not found under <path> (build it)"
    assert redact("Neo4j at bolt://neo:secret@db:7687: refused") == "Neo4j at <url>: refused"
    assert redact("the sentiment app is not set up (run `kgnlp sentiment setup`)") == (
        "the sentiment app is not set up (run `kgnlp sentiment setup`)"
    )
    assert redact("queue full: 4 waiting; retry in 2 s") == "queue full: 4 waiting; retry in 2 s"
    assert redact(r"C:\Users\op\kgnlp\state.sqlite is locked") == "<path> is locked"
