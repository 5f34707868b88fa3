"""Rate limits shared through Redis (``KGNLP_LIMITS__STORAGE_URI=redis://…``): two app instances
(two replicas) on one Redis and one state database count one limit per key over real HTTP; a Redis
that does not answer at start-up is a configuration error, and one that goes away later lets
requests through uncounted (fail open) until it is back.

The ``redis``-marked tests need ``KGNLP_TEST_REDIS_URL`` (``.ci/run`` starts a throw-away server with
``.ci/redis.sh``) or, for the outage test, a ``redis-server`` binary; without them they skip."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.services import build_services
from apps.core.settings import load_settings
from apps.main import create_app
from kgnlp.errors import ConfigurationError
from tests.conftest import LiveServer, free_port
from tests.pg import redis_url

__all__ = ["redis_url"]  # the fixture, re-exported for pytest


def _app(home: Path, storage_uri: str, rate: str = "100000/minute") -> Any:
    """One replica: auth on, keys in the shared state database, limits counted at ``storage_uri``."""
    settings = load_settings(
        home=home,
        database_url=f"sqlite:///{home / 'state.sqlite'}",
        auth={"enabled": True},
        limits={"rate": rate, "storage_uri": storage_uri},
        models={"load_generator": False, "load_embedder": False},
    )
    return create_app(settings, services=build_services(settings))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.redis
def test_two_replicas_share_one_rate_limit(redis_url: str, tmp_path: Path) -> None:
    a, b = _app(tmp_path, redis_url), _app(tmp_path, redis_url)
    _, token = a.state.keys.create("shared", "read", rate_limit="3/minute")
    _, other = a.state.keys.create("other", "read", rate_limit="3/minute")
    with LiveServer(a) as live_a, LiveServer(b) as live_b:
        on_a = [httpx.get(f"{live_a.url}/v1/models", headers=_auth(token)).status_code for _ in range(3)]
        assert on_a == [200, 200, 200]
        r = httpx.get(f"{live_b.url}/v1/models", headers=_auth(token))  # B has not seen the key yet
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"]["type"] == "rate_limit_exceeded"
        assert httpx.get(f"{live_a.url}/v1/models", headers=_auth(token)).status_code == 429
        # the count is per key, whichever replica serves it
        urls = [live_b.url, live_b.url, live_a.url, live_b.url]
        codes = [httpx.get(f"{url}/v1/models", headers=_auth(other)).status_code for url in urls]
        assert codes == [200, 200, 200, 429]
    for app in (a, b):
        app.state.keys.close()


def test_unanswering_redis_is_a_configuration_error_at_start_up(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the redis client comes with the postgres extra")
    port = free_port()  # nothing listens there
    with pytest.raises(ConfigurationError, match=rf"rate-limit storage redis://127\.0\.0\.1:{port}/0 does not answer"):
        _app(tmp_path, f"redis://127.0.0.1:{port}/0")


def test_password_is_not_in_the_start_up_error(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="the redis client comes with the postgres extra")
    with pytest.raises(ConfigurationError) as e:
        _app(tmp_path, f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert "hunter2" not in str(e.value) and ":***@" in str(e.value)


def test_unusable_storage_uri_is_a_configuration_error_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="KGNLP_LIMITS__STORAGE_URI='nosuch://x'"):
        _app(tmp_path, "nosuch://x")
    import limits.util

    # as if the redis client were not installed (limits imports its storage back-ends lazily)
    monkeypatch.setattr(limits.util, "get_dependency", lambda name: (limits.util.MissingModule, None))
    with pytest.raises(ConfigurationError, match=r"kgnlp\[postgres\]"):
        _app(tmp_path, f"redis://127.0.0.1:{free_port()}/0")


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A private redis-server on a free port (this test stops and restarts it): (url, restart)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary (.ci/redis.sh installs Debian's)")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]

    def start() -> None:
        procs.append(subprocess.Popen([*args, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL))
        deadline = time.time() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.time() < deadline, "redis-server did not answer"
            time.sleep(0.05)

    def stop() -> None:
        procs[-1].terminate()
        procs[-1].wait(30)

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", (start, stop)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(30)


@pytest.mark.redis
def test_redis_gone_after_start_up_fails_open_then_counts_again(
    own_redis: tuple[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, (start, stop) = own_redis
    app = _app(tmp_path, url)
    _, token = app.state.keys.create("k", "read", rate_limit="2/minute")
    with LiveServer(app) as live:
        get = lambda: httpx.get(f"{live.url}/v1/models", headers=_auth(token), timeout=30)  # noqa: E731
        assert [get().status_code for _ in range(3)] == [200, 200, 429]
        stop()
        with caplog.at_level(logging.WARNING, logger="kgnlp.ratelimit"):
            t0 = time.monotonic()
            codes = [get().status_code for _ in range(5)]
            took = time.monotonic() - t0
        assert codes == [200] * 5, "Redis down: requests go through uncounted"
        assert took < 10, f"an outage must not stall requests ({took:.1f} s for 5)"
        warnings = [r.getMessage() for r in caplog.records if "letting requests through" in r.getMessage()]
        assert len(warnings) == 1, warnings  # one warning a minute, not one per request
        start()  # back, empty (no persistence): counting starts over
        assert [get().status_code for _ in range(3)] == [200, 200, 429]
    app.state.keys.close()
