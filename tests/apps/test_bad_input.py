"""Hostile request bodies against every POST route, over real HTTP: a clear 4xx, and nothing stored.

Each case mutates a route's valid body (or replaces it) — broken JSON, wrong content types,
huge strings and numbers, deep nesting, NUL characters, invalid UTF-8, unknown fields, bodies
over the size cap (declared and chunked) — and checks that the answer is a 4xx in our error shape
with a message that says what is wrong, and that no table of the service's databases gained or
lost a row. The OpenAI-compatible route ignores unknown fields on purpose (OpenAI clients send
fields we do not implement); every other route refuses them.
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.apps.conftest import Service

MAX_BODY = 2_000_000  # the service's default KGNLP_SERVER__MAX_BODY_BYTES


@dataclass(frozen=True)
class Route:
    path: str
    body: dict[str, Any]
    text: tuple[str | int, ...]  # where a free-text string lives in ``body``
    number: tuple[str | int, ...] | None = None  # where a bounded number lives
    component: str | None = None  # a component the route needs (503 model_unavailable while it is not ready)
    needs_generator: bool = False  # run against the service that has one
    extra_ignored: bool = False


ROUTES = [
    Route("/cs/answer", {"message": "where is my order?"}, ("message",),  # no session id: the server issues one
          component="customer_service"),
    Route("/sentiment/events", {"events": [{"id": "hostile-1", "text": "$AAPL shares slump", "timestamp": 1735812000}]},
          ("events", 0, "text"), ("events", 0, "timestamp"), component="sentiment"),
    Route("/sentiment", {"texts": ["shares fell sharply"]}, ("texts", 0), component="sentiment"),
    Route("/retrieve", {"query": "how do I get a refund", "k": 3}, ("query",), ("k",), component="retrieval"),
    Route("/kg/link?graph=finance", {"text": "Apple and Microsoft report earnings", "min_score": 0.6}, ("text",),
          ("min_score",),
          component="graphs"),
    Route("/recommend", {"user_id": "hostile-user", "k": 5}, ("user_id",), ("k",), component="recommend"),
    Route("/feedback", {"events": [{"user_id": "u1", "item_id": "i1", "event": "play", "event_id": "hostile-1"}]},
          ("events", 0, "item_id"), ("events", 0, "ts"), component="recommend"),
    Route("/admin/recommend/interactions",
          {"interactions": [{"user_id": "u1", "item_id": "i1", "weight": 2, "event_id": "hostile-1"}]},
          ("interactions", 0, "item_id"), ("interactions", 0, "weight"), component="recommend"),
    Route("/admin/keys", {"name": "hostile", "scopes": ["read"]}, ("name",)),
    Route("/admin/corpora/retail/documents", {"documents": [{"id": "hostile-doc-1", "text": "How to get a refund."}]},
          ("documents", 0, "text"), component="retrieval"),
    Route("/v1/chat/completions",
          {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
          ("messages", 0, "content"), ("max_tokens",), needs_generator=True, extra_ignored=True),
    Route("/admin/adapters", {"name": "hostile", "path": "/nonexistent/adapter"}, ("path",), needs_generator=True),
]  # fmt: skip


@dataclass
class Hostile:
    name: str
    make: Callable[[Route], tuple[bytes | Iterator[bytes], dict[str, str]]]
    statuses: frozenset[int]
    says: tuple[str, ...] = ()  # words the message must contain (any of them, case-insensitive)
    applies: Callable[[Route], bool] = field(default=lambda r: True)


JSON = {"content-type": "application/json"}


def _dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _set(body: dict[str, Any], where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    node = out
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return out


def _with_text(r: Route, value: Any) -> bytes:
    return _dump(_set(r.body, r.text, value))


def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


BAD = frozenset({400, 422})
HOSTILE = [
    Hostile("truncated_json", lambda r: (_dump(r.body)[:-3], JSON), BAD, ("json", "decode", "body")),
    Hostile("empty_body", lambda r: (b"", JSON), BAD, ("field required", "body", "json")),
    Hostile("text_plain", lambda r: (_dump(r.body), {"content-type": "text/plain"}), BAD | {415}),
    Hostile("form_encoded", lambda r: (b"a=1&b=2", {"content-type": "application/x-www-form-urlencoded"}), BAD | {415}),
    Hostile("top_level_array", lambda r: (_dump([r.body]), JSON), BAD, ("dict", "object", "valid")),
    Hostile("top_level_string", lambda r: (b'"hello"', JSON), BAD, ("dict", "object", "valid")),
    Hostile("deep_arrays", lambda r: (b"[" * 200_000 + b"]" * 200_000, JSON), BAD),
    Hostile("deep_objects", lambda r: (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, JSON), BAD),
    Hostile("deep_in_field", lambda r: (_with_text(r, "X").replace(b'"X"', b"[" * 50_000 + b"]" * 50_000), JSON), BAD),
    Hostile("invalid_utf8", lambda r: (_with_text(r, "X").replace(b'"X"', b'"\xff\xfe\xc0 bad"'), JSON), BAD,
            ("utf-8", "utf8", "decode", "json", "unicode")),
    Hostile("nul_escape", lambda r: (_with_text(r, "before\u0000after"), JSON), frozenset({422}), ("nul",)),
    Hostile("raw_nul_byte", lambda r: (_with_text(r, "X").replace(b'"X"', b'"a\x00b"'), JSON), BAD,
            ("json", "control", "decode")),
    Hostile("wrong_type", lambda r: (_with_text(r, {"nested": ["object"]}), JSON), frozenset({422}),
            ("string", "valid")),
    Hostile("huge_string", lambda r: (_with_text(r, "x" * 1_500_000), JSON), frozenset({422}),
            ("at most", "characters", "should have", "should match", "pattern")),
    Hostile("nan", lambda r: (_dump(_set(r.body, r.number or (), "NAN")).replace(b'"NAN"', b"NaN"), JSON),
            frozenset({422}), applies=lambda r: r.number is not None),
    Hostile("infinity", lambda r: (_dump(_set(r.body, r.number or (), "INF")).replace(b'"INF"', b"1e999"), JSON),
            frozenset({422}), applies=lambda r: r.number is not None),
    Hostile("huge_integer", lambda r: (_dump(_set(r.body, r.number or (), "BIG")).replace(b'"BIG"', b"9" * 4000),
            JSON), BAD, applies=lambda r: r.number is not None),
    Hostile("negative_number", lambda r: (_dump(_set(r.body, r.number or (), -1)), JSON), frozenset({422}),
            ("greater", "between", "1970", "valid"), applies=lambda r: r.number is not None),
    Hostile("unknown_field", lambda r: (_dump({**r.body, "surprise": 1}), JSON), frozenset({422}),
            ("surprise",), applies=lambda r: not r.extra_ignored),
    Hostile("over_size_cap", lambda r: (_with_text(r, "x" * (MAX_BODY + 10)), JSON), frozenset({413}),
            ("exceeds",)),
    Hostile("over_size_cap_chunked", lambda r: (_chunks(_with_text(r, "x" * (MAX_BODY + 10))), JSON),
            frozenset({413}), ("exceeds",)),
]  # fmt: skip


def row_counts(settings: Any) -> dict[str, Any]:
    """Rows of every table of the service's state database, the API keys (``keys``: wherever the
    service keeps them, by default the ``api_keys`` table of that database), and the index manifests."""
    from apps.core.keystore import KeyStore

    counts: dict[str, Any] = {}
    for manifest in sorted(Path(settings.home, "indexes").glob("*/manifest.json")):
        counts[f"index:{manifest.parent.name}"] = json.loads(manifest.read_text())
    state = Path(settings.db_url.removeprefix("sqlite:///"))
    if state.exists():
        con = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
        try:
            tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for t in tables:
                counts[f"{state.name}:{t}"] = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
        finally:
            con.close()
    with KeyStore.for_settings(settings) as keys:  # the store the service reads (revoked keys count too)
        counts["keys"] = len(keys.list(include_revoked=True))
    return counts


def _real_body(svc: Service, route: Route) -> Route:
    """The route with a body the running service accepts (feedback and events must name a catalogue item)."""
    if route.path not in ("/feedback", "/admin/recommend/interactions") or not _component_ready(svc, "recommend"):
        return route
    probe = {"user_id": "probe", "k": 1, "explain": "none"}
    items = httpx.post(f"{svc.url}/recommend", json=probe, timeout=60).json()["items"]
    where = ("events", 0, "item_id") if route.path == "/feedback" else ("interactions", 0, "item_id")
    return Route(route.path, _set(route.body, where, items[0]["item_id"]), route.text,
                 route.number, route.component, route.needs_generator, route.extra_ignored)  # fmt: skip


def _component_ready(svc: Service, name: str | None) -> bool:
    if name is None:
        return True
    comp = svc.services.components.get(name)
    return comp is not None and comp.status == "ready"


CASES = [pytest.param(r, h, id=f"{r.path}-{h.name}") for r in ROUTES for h in HOSTILE if h.applies(r)]


@pytest.mark.parametrize(("route", "hostile"), CASES)
def test_hostile_body(route: Route, hostile: Hostile, request: pytest.FixtureRequest) -> None:
    svc: Service = request.getfixturevalue("service" if route.needs_generator else "nogen_service")
    assert svc.services.settings.db_url.startswith("sqlite:///"), "these tests count rows in the SQLite state"
    before = row_counts(svc.services.settings)
    adapters_before = httpx.get(f"{svc.url}/admin/adapters", timeout=30).text if route.needs_generator else ""
    route = _real_body(svc, route)
    content, headers = hostile.make(route)
    r = httpx.post(f"{svc.url}{route.path}", content=content, headers=headers, timeout=120)
    body = r.json()  # every answer, errors included, is JSON
    ready = _component_ready(svc, route.component)
    if not ready and r.status_code == 503:  # the route's component is not built on this machine
        assert body["error"]["type"] == "model_unavailable", body
    else:
        assert r.status_code in hostile.statuses, (r.status_code, body)
        err = body["error"]
        assert err["code"] == r.status_code and err["type"] and body["request_id"], body
        message = err["message"].lower()
        assert len(message) >= 10, body
        if hostile.says:
            assert any(w in message for w in hostile.says), (hostile.says, body)
        assert "traceback" not in message and "sqlalchemy" not in message, body
    assert row_counts(svc.services.settings) == before, "a rejected request changed the database"
    if route.needs_generator:
        assert httpx.get(f"{svc.url}/admin/adapters", timeout=30).text == adapters_before
    assert httpx.get(f"{svc.url}/health/live", timeout=30).status_code == 200


def test_valid_bodies_are_accepted_and_stored(nogen_service: Service) -> None:
    """The corpus starts from bodies the service accepts, and the row counter sees what they store."""
    settings = nogen_service.services.settings
    before = row_counts(settings)
    for route in ROUTES:
        if route.needs_generator or not _component_ready(nogen_service, route.component):
            continue
        route = _real_body(nogen_service, route)
        r = httpx.post(f"{nogen_service.url}{route.path}", json=route.body, timeout=120)
        assert r.status_code in (200, 201), (route.path, r.text)
    after = row_counts(settings)
    assert after["state.sqlite:sentiment_events"] == before.get("state.sqlite:sentiment_events", 0) + 1
    assert after["state.sqlite:cs_turns"] == before.get("state.sqlite:cs_turns", 0) + 2
    assert after["keys"] == before["keys"] + 1  # POST /admin/keys
    if _component_ready(nogen_service, "retrieval"):  # the admin route wrote the service's own copy
        assert after["index:retail"]["documents"] == before["index:retail"]["documents"] + 1


INJECTIONS = [
    "'; DROP TABLE sentiment_events; --",
    '" OR 1=1 --',
    "x') UNION SELECT key_hash FROM api_keys --",
    "MATCH (n) DETACH DELETE n",
    "}) MATCH (n) DETACH DELETE n //",
    "$AAPL'}) WITH 1 AS x CALL db.clearQueryCaches() //",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_strings_in_text_fields_are_only_text(nogen_service: Service, payload: str) -> None:
    """SQL/Cypher in every free-text field: handled as data (2xx or a clear 4xx), nothing dropped or deleted."""
    svc = nogen_service
    settings = svc.services.settings
    graph_before = httpx.get(f"{svc.url}/kg/search", params={"q": "Apple", "graph": "finance"}, timeout=30).json()
    before = row_counts(settings)
    tables_before = set(before)
    for route in ROUTES:
        if route.needs_generator or not _component_ready(svc, route.component):
            continue
        route = _real_body(svc, route)
        text = f"{payload} {uuid.uuid4().hex[:6]}" if route.path == "/sentiment/events" else payload
        body = _set(route.body, route.text, text)
        if route.path == "/sentiment/events":
            body["events"][0]["id"] = f"inj-{uuid.uuid4().hex[:12]}"
        r = httpx.post(f"{svc.url}{route.path}", json=body, timeout=120)
        assert r.status_code < 500, (route.path, r.status_code, r.text)
        if r.status_code >= 400:
            assert len(r.json()["error"]["message"]) >= 10, (route.path, r.text)
    counts = row_counts(settings)
    assert set(counts) >= tables_before, "a table disappeared"
    for name, rows in before.items():  # POSTs add rows (events, turns); none may lose any
        if isinstance(rows, int):
            assert counts[name] >= rows, f"{name} lost rows: {rows} -> {counts[name]}"
        else:
            assert counts[name]["documents"] >= rows["documents"], f"{name} lost documents"
    graph_after = httpx.get(f"{svc.url}/kg/search", params={"q": "Apple", "graph": "finance"}, timeout=30).json()
    assert graph_after == graph_before, "the graph changed"


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injection_strings_in_ids_and_query_parameters_are_only_data(nogen_service: Service, payload: str) -> None:
    """The same payloads as entity ids, types, graph names, item and alert ids: a 4xx or an empty
    answer, never a 5xx, and not one row or graph node fewer (or more: these are reads)."""
    svc = nogen_service
    settings = svc.services.settings
    search = {"q": "Apple", "graph": "finance"}
    graph_before = httpx.get(f"{svc.url}/kg/search", params=search, timeout=30).json()
    neighbors_before = httpx.get(f"{svc.url}/kg/entities/company:AAPL/neighbors", params={"graph": "finance"}).json()
    before = row_counts(settings)
    quoted = urllib.parse.quote(payload, safe="")
    calls: list[tuple[str, dict[str, Any]]] = [
        (f"/kg/entities/{quoted}", {"graph": "finance"}),
        (f"/kg/entities/{quoted}/neighbors", {"graph": "finance"}),
        (f"/kg/entities/{quoted}/similar", {"graph": "finance"}),
        ("/kg/entities/company:AAPL/neighbors", {"graph": "finance", "types": [payload]}),
        ("/kg/search", {"q": payload, "graph": "finance"}),
        ("/kg/search", {"q": "Apple", "graph": "finance", "type": payload}),
        ("/kg/search", {"q": "Apple", "graph": payload}),
        (f"/kg/entities/{quoted}", {"graph": payload}),
        (f"/items/{quoted}/similar", {}),
        (f"/alerts/{quoted[:36]}", {}),
        ("/alerts", {"entity": payload}),
        ("/sentiment/timeline", {"entity": payload}),
    ]
    for path, params in calls:
        r = httpx.get(f"{svc.url}{path}", params=params, timeout=60)
        assert r.status_code < 500, (path, params, r.status_code, r.text)
        if r.status_code >= 400:
            assert len(r.json()["error"]["message"]) >= 10, (path, r.text)
        else:
            assert not re.search(r"\b[0-9a-f]{64}\b", r.text), (path, r.text)  # no key hash came back
    assert row_counts(settings) == before, "a read with an injection payload changed the database"
    assert httpx.get(f"{svc.url}/kg/search", params=search, timeout=30).json() == graph_before, "the graph changed"
    after = httpx.get(f"{svc.url}/kg/entities/company:AAPL/neighbors", params={"graph": "finance"}).json()
    assert after == neighbors_before, "the graph's edges changed"
