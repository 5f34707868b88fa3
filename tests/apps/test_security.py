"""API keys, scopes and rate limits over real HTTP, on the real app's full route table."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from apps.core.keystore import KeyStore, Scope, parse_scopes
from apps.core.security import explain, required_scope
from apps.core.services import build_services
from apps.core.settings import load_settings
from apps.main import create_app
from kgnlp.errors import NotFoundError, ValidationError
from tests.conftest import LiveServer, local_client

READ, WRITE, ADMIN = Scope.READ, Scope.WRITE, Scope.ADMIN


def _settings(home: Path, **overrides: Any) -> Any:
    return load_settings(home=home, models={"load_generator": False, "load_embedder": False}, **overrides)


def _app(home: Path, **overrides: Any) -> Any:
    settings = _settings(home, **overrides)
    return create_app(settings, services=build_services(settings))


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path template) the app serves, flattening included routers."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = list(app.routes)
    out = []
    for r in routes:
        for method in sorted(getattr(r, "methods", None) or []):
            if method != "HEAD":  # served by the GET handler, same rule
                out.append((method, r.path_format))
    assert out, "no routes found: the enumeration broke"
    return out


def _concrete(template: str) -> str:
    path = re.sub(r"\{(\w+):path\}", r"\1-1/x", template)
    return re.sub(r"\{(\w+)(:\w+)?\}", r"\1-1", path)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("secured")
    app = _app(home, auth={"enabled": True}, limits={"rate": "100000/minute"})
    store: KeyStore = app.state.keys
    tokens = {scope: store.create(f"{scope.value}-key", scope.value)[1] for scope in Scope}
    with LiveServer(app) as live:
        yield {"url": live.url, "app": app, "home": home, "tokens": tokens, "store": store}
    store.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- the table ---------------------------------------------------------------------------------

# Written by hand, route by route, from what each route does (not derived from apps.core.security.RULES):
# a new route fails test_the_table_names_every_route until someone decides its scope here.
EXPECTED: dict[tuple[str, str], Scope | None] = {
    ("GET", "/health/live"): None,
    ("GET", "/health/ready"): None,
    ("GET", "/openapi.json"): READ,
    ("GET", "/docs"): READ,
    ("GET", "/docs/oauth2-redirect"): READ,
    ("GET", "/redoc"): READ,
    ("GET", "/metrics"): READ,
    ("GET", "/v1/models"): READ,
    ("POST", "/v1/chat/completions"): READ,
    ("POST", "/cs/answer"): READ,
    ("POST", "/cs/sessions"): READ,  # a new conversation with a server-issued id
    ("DELETE", "/cs/sessions/{session_id}"): WRITE,  # a customer's delete-my-data request
    ("GET", "/cs/handoffs"): WRITE,  # other customers' messages: operators only
    ("GET", "/chat"): READ,
    ("POST", "/retrieve"): READ,
    ("POST", "/sentiment"): READ,
    ("GET", "/sentiment/model"): READ,
    ("POST", "/sentiment/events"): WRITE,
    ("GET", "/sentiment/timeline"): READ,
    ("GET", "/alerts"): READ,
    ("GET", "/alerts/{alert_id}"): READ,
    ("POST", "/alerts/{alert_id}/ack"): WRITE,
    ("GET", "/admin/sentiment/deliveries"): ADMIN,
    ("POST", "/recommend"): READ,
    ("GET", "/items/{item_id}/similar"): READ,
    ("POST", "/feedback"): WRITE,
    ("GET", "/kg/entities/{entity_id}"): READ,
    ("GET", "/kg/search"): READ,
    ("GET", "/kg/entities/{entity_id}/neighbors"): READ,
    ("POST", "/kg/link"): READ,
    ("GET", "/kg/entities/{entity_id}/similar"): READ,
    ("GET", "/admin/keys"): ADMIN,
    ("POST", "/admin/keys"): ADMIN,
    ("DELETE", "/admin/keys/{key_id}"): ADMIN,
    ("GET", "/admin/adapters"): ADMIN,
    ("POST", "/admin/adapters"): ADMIN,
    ("DELETE", "/admin/adapters/{name}"): ADMIN,
    ("PUT", "/admin/recommend/items"): ADMIN,
    ("DELETE", "/admin/recommend/items/{item_id}"): ADMIN,
    ("POST", "/admin/recommend/interactions"): ADMIN,
    ("POST", "/admin/recommend/train"): ADMIN,
    ("GET", "/admin/recommend/train/{job_id}"): ADMIN,
    ("POST", "/admin/corpora/{name}/documents"): ADMIN,
    ("DELETE", "/admin/corpora/{name}/documents/{doc_id}"): ADMIN,
}

# Paths no route serves, and near misses of public or admin paths: deny by default.
UNSERVED: list[tuple[str, str, Scope | None]] = [
    ("GET", "/healthz", ADMIN),  # a prefix of a public path is not public
    ("GET", "/unknown", ADMIN),
    ("POST", "/unknown", ADMIN),
    ("PUT", "/v1/models", ADMIN),
    ("POST", "/v1/models", ADMIN),
    ("GET", "/ADMIN/keys", ADMIN),
    ("POST", "/kg/entities", ADMIN),  # graph writes are ingest
    ("DELETE", "/alerts/7", ADMIN),
    ("PUT", "/cs/answer", ADMIN),
    ("HEAD", "/v1/models", READ),
]


def test_the_table_names_every_route(tmp_path: Path) -> None:
    served = set(_routes(_app(tmp_path)))
    assert served - set(EXPECTED) == set(), "routes missing from EXPECTED: decide their scope by hand"
    assert set(EXPECTED) - served == set(), "EXPECTED lists routes the app does not serve"


@pytest.mark.parametrize(("method", "template"), sorted(EXPECTED))
def test_scope_table(method: str, template: str) -> None:
    assert required_scope(method, _concrete(template)) == EXPECTED[method, template]
    assert required_scope(method, template) == EXPECTED[method, template]


@pytest.mark.parametrize(("method", "path", "scope"), UNSERVED)
def test_unserved_paths_are_denied_by_default(method: str, path: str, scope: Scope | None) -> None:
    assert required_scope(method, path) == scope


def test_every_route_of_the_real_app_is_named_by_a_rule(tmp_path: Path) -> None:
    app = _app(tmp_path)
    unlisted = [f"{m} {p}" for m, p in _routes(app) if explain(m, p)[1] is None]
    assert not unlisted, (
        f"routes without an explicit rule in apps.core.security.RULES (they need admin by default): {unlisted}"
    )


# -- every route, over HTTP --------------------------------------------------------------------


def test_every_route_needs_the_right_scope(secured: dict[str, Any]) -> None:
    url, tokens = secured["url"], secured["tokens"]
    checked = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, template in _routes(secured["app"]):
            path = _concrete(template)
            needed = EXPECTED[method, template]
            body: dict[str, Any] | None = {} if method in ("POST", "PUT", "PATCH") else None

            def call(headers: dict[str, str], method: str = method, path: str = path, body: Any = body) -> Any:
                return client.request(method, path, headers=headers, json=body)

            if needed is None:
                assert call({}).status_code not in (401, 403), f"{method} {template} should be public"
                continue
            anonymous = call({})
            assert anonymous.status_code == 401, f"{method} {template}: {anonymous.status_code}"
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert anonymous.json()["error"]["type"] == "authentication_error"
            for scope, token in tokens.items():
                r = call(_auth(token))
                if scope.rank < needed.rank:
                    assert r.status_code == 403, f"{method} {template} with {scope.value}: {r.status_code}"
                    assert r.json()["error"]["type"] == "permission_error"
                    assert needed.value in r.json()["error"]["message"]
                else:
                    assert r.status_code not in (401, 403), f"{method} {template} with {scope.value}: {r.text}"
            checked += 1
    assert checked >= 10


def test_bad_tokens_get_401(secured: dict[str, Any]) -> None:
    url, read = secured["url"], secured["tokens"][READ]
    key_id = read.split("_")[1]
    for bad in (
        "nonsense",
        read[:-1] + ("A" if read[-1] != "A" else "B"),
        f"kgnlp_{key_id}_",
        "kgnlp_000000000000_" + "x" * 43,
    ):
        r = httpx.get(f"{url}/v1/models", headers=_auth(bad))
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Basic {read}"}).status_code == 401
    r = httpx.get(f"{url}/v1/models", headers={**_auth(read), "X-Request-ID": "rid-7"})
    assert r.status_code == 200
    denied = httpx.get(f"{url}/nowhere", headers={"X-Request-ID": "rid-8"})
    assert denied.json()["request_id"] == "rid-8" and denied.headers["x-request-id"] == "rid-8"


def test_keys_are_stored_hashed(secured: dict[str, Any]) -> None:
    db = secured["store"].path  # the service's state database (no keys_path set)
    assert db is not None and db.name == "state.sqlite" and db.parent == Path(secured["home"])
    files = sorted(db.parent.glob(db.name + "*"))
    assert files and (files[0].stat().st_mode & 0o077) == 0  # owner-only
    raw = b"".join(f.read_bytes() for f in files)
    for token in secured["tokens"].values():
        secret = token.split("_", 2)[2]
        assert token.encode() not in raw and secret.encode() not in raw
    assert len(secured["store"].list()) >= 3


def test_key_management_over_http_and_revocation(secured: dict[str, Any]) -> None:
    url, admin = secured["url"], secured["tokens"][ADMIN]
    created = httpx.post(f"{url}/admin/keys", headers=_auth(admin), json={"name": "ci", "scopes": ["write"]})
    assert created.status_code == 201, created.text
    token, key_id = created.json()["token"], created.json()["id"]
    assert httpx.get(f"{url}/v1/models", headers=_auth(token)).status_code == 200
    listed = httpx.get(f"{url}/admin/keys", headers=_auth(admin)).json()["data"]
    assert key_id in {k["id"] for k in listed} and all("token" not in k and "hash" not in k for k in listed)
    assert httpx.get(f"{url}/v1/models", headers=_auth(token)).status_code == 200  # works until revoked
    revoked_at = httpx.delete(f"{url}/admin/keys/{key_id}", headers=_auth(admin)).json()["revoked_at"]
    assert isinstance(revoked_at, (int, float, str)) and revoked_at
    r = httpx.get(f"{url}/v1/models", headers=_auth(token))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    assert r.json()["error"]["type"] == "authentication_error"
    listed = {k["id"]: k for k in httpx.get(f"{url}/admin/keys", headers=_auth(admin)).json()["data"]}
    assert listed[key_id]["revoked_at"] == revoked_at  # the store says revoked: the 401 is the revocation's
    assert secured["store"].verify(token) is None
    bad = httpx.post(f"{url}/admin/keys", headers=_auth(admin), json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422


def test_cli_create_list_revoke_and_the_server_sees_it(secured: dict[str, Any]) -> None:
    from apps.cli import app as cli

    url, home = secured["url"], str(secured["home"])
    store = f"sqlite:///{Path(home) / 'state.sqlite'}"  # --store takes a URL (or a file)
    runner = CliRunner(env={"KGNLP_DATABASE_URL": None, "KGNLP_AUTH__KEYS_PATH": None})
    # without --store the CLI writes where the service reads: the state database of --home
    made = runner.invoke(cli, ["keys", "create", "--name", "cli-key", "--scopes", "read", "--home", home])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[0]
    assert token.startswith("kgnlp_")
    assert httpx.get(f"{url}/v1/models", headers=_auth(token)).status_code == 200
    listed = runner.invoke(cli, ["keys", "list", "--store", store])
    assert "cli-key" in listed.stdout and token not in listed.stdout and token.split("_", 2)[2] not in listed.stdout
    revoked = runner.invoke(cli, ["keys", "revoke", token.split("_")[1], "--store", store])
    assert revoked.exit_code == 0, revoked.output
    assert httpx.get(f"{url}/v1/models", headers=_auth(token)).status_code == 401
    missing = runner.invoke(cli, ["keys", "revoke", "ffffffffffff", "--store", store])
    assert missing.exit_code == 1


def test_rate_limit_gives_429_with_retry_after(secured: dict[str, Any]) -> None:
    url, store = secured["url"], secured["store"]
    _, slow = store.create("slow", "read", rate_limit="3/minute")
    codes = [httpx.get(f"{url}/v1/models", headers=_auth(slow)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = httpx.get(f"{url}/v1/models", headers=_auth(slow))
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json()["error"]["type"] == "rate_limit_exceeded"
    # limits are per key: another key is unaffected
    assert httpx.get(f"{url}/v1/models", headers=_auth(secured["tokens"][READ])).status_code == 200
    # health probes are never limited
    assert httpx.get(f"{url}/health/live").status_code == 200


# -- other configurations (in process) ---------------------------------------------------------


def test_open_read_lets_reads_through_and_nothing_else(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    app = _app(tmp_path, auth={"enabled": True, "open_read": True})
    with TestClient(app) as client:
        assert client.get("/v1/models").status_code == 200
        assert client.post("/kg/link", json={}).status_code == 422  # read POST: through to validation
        assert client.get("/admin/keys").status_code == 401
        assert client.get("/v1/models", headers=_auth("kgnlp_bogus")).status_code == 401  # a bad key is still bad
    app.state.keys.close()


def test_auth_off_on_loopback_by_default_and_cors_off(tmp_path: Path) -> None:
    with local_client(_app(tmp_path)) as client:
        r = client.get("/v1/models", headers={"Origin": "https://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert client.get("/admin/keys").status_code == 200


def test_cors_when_configured_answers_preflight_without_a_key(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    app = _app(tmp_path, auth={"enabled": True}, server={"cors_origins": ["https://app.example"]})
    with TestClient(app) as client:
        pre = client.options(
            "/v1/chat/completions",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )  # fmt: skip
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://app.example"
        r = client.get("/v1/models", headers={"Origin": "https://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "https://app.example"


def test_anonymous_rate_limit_per_address(tmp_path: Path) -> None:
    with local_client(_app(tmp_path, limits={"anonymous_rate": "2/minute"})) as client:
        assert [client.get("/v1/models").status_code for _ in range(3)] == [200, 200, 429]


def test_keystore_library(tmp_path: Path) -> None:
    with KeyStore(tmp_path / "k.sqlite") as store:
        key, token = store.create("svc", "read,admin", rate_limit="5/second")
        assert key.scopes == {READ, ADMIN} and key.allows(WRITE)
        assert store.verify(token) == key
        assert store.revoke(token).revoked  # a whole token works too
        assert store.verify(token) is None
        assert store.revoke(key.id).revoked_at == store.get(key.id).revoked_at  # idempotent
        assert [k.id for k in store.list(include_revoked=False)] == []
        with pytest.raises(NotFoundError):
            store.revoke("000000000000")
        with pytest.raises(ValidationError, match="unknown scope"):
            store.create("x", "superuser")
        with pytest.raises(ValidationError, match="rate limit"):
            store.create("x", "read", rate_limit="lots")
    assert parse_scopes(["WRITE"]) == {WRITE}
