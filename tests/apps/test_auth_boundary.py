"""Where auth is off by default, it is off only for requests that provably come from this machine.

The settings' bind address cannot say where a request came from (``uvicorn … --factory --host
0.0.0.0`` runs the loopback-default app on every interface, a proxy on the same host connects from
loopback, a DNS-rebound page sends its own ``Host``), so the decision reads the connection and the
``Host`` header. Also: a root path does not change a route's scope.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.keystore import KeyStore
from apps.core.security import host_name, is_local_request, route_path
from apps.core.services import build_services
from apps.core.settings import load_settings
from apps.main import create_app
from tests.conftest import LiveServer, local_client


def _app(home: Path, **overrides: Any) -> Any:
    settings = load_settings(home=home, models={"load_generator": False, "load_embedder": False}, **overrides)
    return create_app(settings, services=build_services(settings))


def _scope(
    client: str = "127.0.0.1", server: str = "127.0.0.1", host: bytes = b"127.0.0.1:8000", **extra: bytes
) -> Any:
    headers = [(b"host", host)] + [(k.replace("_", "-").encode(), v) for k, v in extra.items()]
    return {"type": "http", "client": (client, 5000), "server": (server, 8000), "headers": headers, "path": "/"}


def _outside_address() -> str | None:
    """An address of this machine that is not loopback (the route a LAN client takes), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_auth_mode_follows_the_bind_address_and_the_setting(tmp_path: Path) -> None:
    def mode(**overrides: Any) -> str:
        s = load_settings(home=tmp_path, **overrides)
        return s.auth.mode(s.server)

    assert mode() == "local"  # 127.0.0.1: the local demo, keys only for requests from elsewhere
    assert mode(server={"host": "0.0.0.0"}) == "on"
    assert mode(server={"host": "::1"}) == "local"
    assert mode(server={"host": "0.0.0.0"}, auth={"enabled": False}) == "off"
    assert mode(auth={"enabled": True}) == "on"


def test_a_request_is_local_only_when_socket_peer_and_host_are_all_loopback() -> None:
    assert is_local_request(_scope())
    assert is_local_request(_scope(client="::1", server="::1", host=b"[::1]:8000"))
    assert is_local_request(_scope(host=b"localhost"))
    assert not is_local_request(_scope(client="192.168.1.20"))  # a LAN client (--host 0.0.0.0)
    assert not is_local_request(_scope(server="10.0.0.5"))  # arrived on a public interface
    assert not is_local_request(_scope(host=b"attacker.example"))  # DNS rebinding
    assert not is_local_request(_scope(host=b"localhost.attacker.example"))
    assert not is_local_request(_scope(host=b""))
    assert not is_local_request(_scope(x_forwarded_for=b"203.0.113.9"))  # a proxy on this host
    assert not is_local_request(_scope(forwarded=b"for=203.0.113.9"))
    assert not is_local_request(_scope(x_real_ip=b"203.0.113.9"))
    no_host = _scope()
    no_host["headers"] = []
    assert not is_local_request(no_host)
    unix = _scope()
    unix["server"], unix["client"] = ("/run/kgnlp.sock", None), None
    assert not is_local_request(unix)
    assert host_name(_scope(host=b"[::1]:8000")) == "::1" and host_name(_scope(host=b"Example.COM:80")) == "example.com"


def test_route_path_drops_the_root_path() -> None:
    assert route_path({"path": "/cs/admin/keys", "root_path": "/cs"}) == "/admin/keys"
    assert route_path({"path": "/cs", "root_path": "/cs/"}) == "/"
    assert route_path({"path": "/admin/keys", "root_path": ""}) == "/admin/keys"
    assert route_path({"path": "/csv/admin", "root_path": "/cs"}) == "/csv/admin"  # not a segment prefix
    assert route_path({"path": "/admin/keys", "root_path": "/cs"}) == "/admin/keys"  # a server that keeps them apart


def test_the_default_app_wants_a_key_from_anyone_but_this_machine(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    app = _app(tmp_path)  # the default settings: 127.0.0.1, auth unset
    with local_client(app) as client:
        assert client.get("/admin/keys").status_code == 200
        # a key sent from this machine is still that key: checked, with its scope
        _, read = app.state.keys.create("local-reader", "read")
        assert client.get("/admin/keys", headers={"Authorization": f"Bearer {read}"}).status_code == 403
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {read}"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": "Bearer kgnlp_bogus"}).status_code == 401
        # an OpenAI client must send some key: a token that is not ours is no claim, locally
        assert client.get("/admin/keys", headers={"Authorization": "Bearer unused"}).status_code == 200
    for client_address in ("192.168.1.20", "203.0.113.9"):
        with TestClient(app, base_url="http://127.0.0.1:8000", client=(client_address, 5000)) as remote:
            r = remote.post("/admin/keys", json={"name": "mine", "scopes": ["admin"]})
            assert r.status_code == 401, r.text
            assert remote.get("/health/live").status_code == 200  # probes stay public
    app.state.keys.close()


def test_uvicorn_on_every_interface_does_not_open_the_admin_routes(tmp_path: Path) -> None:
    """``uvicorn apps.main:create_app --factory --host 0.0.0.0``: the settings still say 127.0.0.1."""
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to reach the server on")
    app = _app(tmp_path)
    with LiveServer(app, host="0.0.0.0") as live:
        lan = f"http://{outside}:{live.port}"
        r = httpx.post(f"{lan}/admin/keys", json={"name": "pwned", "scopes": ["admin"]}, timeout=30)
        assert r.status_code == 401, r.text
        assert httpx.get(f"{lan}/cs/handoffs", timeout=30).status_code == 401
        assert httpx.get(f"{lan}/health/live", timeout=30).status_code == 200
        assert httpx.get(f"{live.url}/admin/keys", timeout=30).status_code == 200  # this machine: no key
    assert app.state.keys.list() == []
    app.state.keys.close()


def test_loopback_requests_with_a_foreign_host_or_from_a_proxy_need_a_key(tmp_path: Path) -> None:
    app = _app(tmp_path)
    with LiveServer(app) as live:
        rebound = httpx.get(f"{live.url}/admin/keys", headers={"Host": "attacker.example"}, timeout=30)
        assert rebound.status_code == 401, rebound.text
        proxied = httpx.post(
            f"{live.url}/admin/keys", json={"name": "x", "scopes": ["admin"]},
            headers={"X-Forwarded-For": "203.0.113.9"}, timeout=30,
        )  # fmt: skip
        assert proxied.status_code == 401, proxied.text
        assert httpx.get(f"{live.url}/admin/keys", headers={"Host": "localhost"}, timeout=30).status_code == 200
    assert app.state.keys.list() == []
    app.state.keys.close()


def test_auth_off_checks_the_host(tmp_path: Path) -> None:
    app = _app(tmp_path, auth={"enabled": False, "allowed_hosts": ["svc.internal"]})
    with LiveServer(app) as live:
        r = httpx.get(f"{live.url}/admin/keys", headers={"Host": "attacker.example"}, timeout=30)
        assert r.status_code == 400 and "auth.allowed_hosts" in r.json()["error"]["message"]
        assert httpx.get(f"{live.url}/admin/keys", headers={"Host": "svc.internal:8000"}, timeout=30).status_code == 200
        assert httpx.get(f"{live.url}/admin/keys", timeout=30).status_code == 200
        assert httpx.get(f"{live.url}/health/live", headers={"Host": "attacker.example"}, timeout=30).status_code == 200
    app.state.keys.close()
    anyhost = _app(tmp_path / "any", auth={"enabled": False, "allowed_hosts": ["*"]})
    with local_client(anyhost, headers={"Host": "anything.example"}) as client:
        assert client.get("/admin/keys").status_code == 200
    anyhost.state.keys.close()


def test_a_root_path_does_not_lower_a_routes_scope(tmp_path: Path) -> None:
    """``uvicorn … --root-path /cs``: ``/admin/keys`` arrives as ``/cs/admin/keys`` and must stay admin."""
    app = _app(tmp_path, auth={"enabled": True}, limits={"enabled": False})
    store: KeyStore = app.state.keys
    _, read = store.create("reader", "read")
    _, admin = store.create("ops", "admin")
    with LiveServer(app, root_path="/cs") as live:
        r = httpx.post(
            f"{live.url}/admin/keys", json={"name": "escalated", "scopes": ["admin"]},
            headers={"Authorization": f"Bearer {read}"}, timeout=30,
        )  # fmt: skip
        assert r.status_code == 403, r.text
        assert "admin" in r.json()["error"]["message"]
        ok = httpx.get(f"{live.url}/admin/keys", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert ok.status_code == 200
        assert (
            httpx.get(f"{live.url}/v1/models", headers={"Authorization": f"Bearer {read}"}, timeout=30).status_code
            == 200
        )
    assert sorted(k.name for k in store.list()) == ["ops", "reader"]
    store.close()
