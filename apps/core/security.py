"""Who may call what: the route → scope table and the API-key middleware.

Every request path is classified by :func:`required_scope` (one explicit, ordered rule table);
a path no rule names needs ``admin`` (deny by default). Keys are checked by pure ASGI middleware
before routing, so unknown paths, the OpenAPI docs and streamed responses are covered alike and
nothing is buffered.

Scopes nest: ``admin`` ⊇ ``write`` ⊇ ``read``.

- ``read``: every ``GET``, plus ``POST`` queries that change no durable state (chat completions,
  retrieval, entity linking, sentiment scoring, recommendations, customer-service turns).
- ``write``: ``POST`` that records data (sentiment events, feedback, alert acknowledgements).
- ``admin``: everything under ``/admin`` (keys, adapters, ingest, training) and every path not
  listed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from apps.core.connection import host_name, is_local_request, is_loopback_host
from apps.core.errors import send_error
from apps.core.keystore import ApiKey, KeyStore
from apps.core.keystore import Scope as KeyScope

if TYPE_CHECKING:
    from fastapi import FastAPI

    from apps.core.ratelimit import RateLimiter
    from apps.core.settings import Settings

__all__ = [
    "RULES",
    "ApiKeyAuth",
    "Rule",
    "explain",
    "host_name",
    "install_security",
    "is_local_request",
    "required_scope",
    "route_path",
]

log = logging.getLogger("kgnlp.security")

TOKEN_PREFIX = "kgnlp_"  # every key the store issues starts so (apps.core.keystore)

READ, WRITE, ADMIN = KeyScope.READ, KeyScope.WRITE, KeyScope.ADMIN
_ANY: frozenset[str] = frozenset()
_GET = frozenset({"GET", "HEAD", "OPTIONS"})
_POST = frozenset({"POST"})


@dataclass(frozen=True)
class Rule:
    """Requests with one of ``methods`` (empty: any) on a path matching ``pattern`` need ``scope``.

    ``pattern`` is a path whose segments may be ``*`` (exactly one segment) and whose last
    segment may be ``**`` (the path above and everything below it). ``scope`` None: public.
    """

    methods: frozenset[str]
    pattern: str
    scope: KeyScope | None

    def matches(self, method: str, segments: list[str]) -> bool:
        if self.methods and method not in self.methods:
            return False
        want = self.pattern.strip("/").split("/") if self.pattern != "/" else []
        if want and want[-1] == "**":
            want = want[:-1]
            if len(segments) < len(want):
                return False
            segments = segments[: len(want)]
        elif len(segments) != len(want):
            return False
        return all(w in ("*", s) for w, s in zip(want, segments, strict=True))


# First match wins: specific rules before broad ones.
RULES: tuple[Rule, ...] = (
    Rule(_ANY, "/health/**", None),
    Rule(_ANY, "/admin/**", ADMIN),
    # documentation and monitoring
    Rule(_GET, "/openapi.json", READ),
    Rule(_GET, "/docs/**", READ),
    Rule(_GET, "/redoc", READ),
    Rule(_GET, "/metrics", READ),
    # state-changing POSTs
    Rule(_POST, "/sentiment/events", WRITE),
    Rule(_POST, "/alerts/*/ack", WRITE),
    Rule(_POST, "/feedback", WRITE),
    Rule(frozenset({"DELETE"}), "/cs/sessions/*", WRITE),  # a user's delete-my-data request
    # query POSTs: they read the graph, indexes and models and store nothing durable
    Rule(_POST, "/v1/chat/completions", READ),
    Rule(_POST, "/retrieve", READ),
    Rule(_POST, "/kg/link", READ),
    Rule(_POST, "/sentiment", READ),
    Rule(_POST, "/recommend", READ),
    Rule(_POST, "/cs/**", READ),
    # reads of the application APIs
    Rule(_GET, "/v1/**", READ),
    Rule(_GET, "/kg/**", READ),
    Rule(_GET, "/sentiment/**", READ),
    Rule(_GET, "/alerts/**", READ),
    Rule(_GET, "/recommend/**", READ),
    Rule(_GET, "/items/**", READ),
    Rule(_GET, "/cs/handoffs", WRITE),  # other users' messages: operators only
    Rule(_GET, "/cs/**", READ),
    Rule(_GET, "/chat", READ),
)


def explain(method: str, path: str) -> tuple[KeyScope | None, Rule | None]:
    """The scope a request needs and the rule that decided it.

    Args:
        method: HTTP method.
        path: request path (a route template such as ``/kg/entities/{id}`` works too).

    Returns:
        ``(scope, rule)``; scope None means public; rule None means no rule matched and the
        deny-by-default ``admin`` applies.
    """
    segments = [s for s in path.split("/") if s]
    method = method.upper()
    for rule in RULES:
        if rule.matches(method, segments):
            return rule.scope, rule
    return ADMIN, None


def required_scope(method: str, path: str) -> KeyScope | None:
    """The scope ``method path`` needs (None: public). Unlisted paths need ``admin``.

    Args:
        method: HTTP method.
        path: request path.

    Returns:
        the scope, or None for public routes (``/health/*``).
    """
    return explain(method, path)[0]


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else ""
    return None


def route_path(scope: Scope) -> str:
    """The path the app routes on: ``scope["path"]`` without the ``root_path`` a proxy mounts it under.

    ASGI servers put the root path in front of ``path`` (``uvicorn --root-path /cs``: ``/cs/admin/keys``);
    classifying that would read the admin route as a ``/cs/**`` one.
    """
    path: str = scope["path"]
    root = (scope.get("root_path") or "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


class ApiKeyAuth:
    """Check ``Authorization: Bearer`` against the key store and the route's scope, then the rate limit.

    Sets ``scope["state"]["api_key"]`` (the :class:`ApiKey`, or None) for routes and logs.

    Args:
        app: the wrapped ASGI app.
        store: the key store (unused when ``mode`` is ``off``).
        mode: ``on`` (keys required), ``off`` (no keys; the ``Host`` must be a loopback name or one of
            ``allowed_hosts``) or ``local`` (keys required unless :func:`is_local_request`).
        open_read: let ``read`` routes through without a key (a key that is sent is still checked).
        limiter: per-key (and, if configured, per-address) rate limits; None: no limits.
        allowed_hosts: extra ``Host`` names accepted while auth is off (``*``: any).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: KeyStore | None,
        mode: Literal["on", "off", "local"],
        open_read: bool = False,
        limiter: RateLimiter | None = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.store = store
        self.mode = mode
        self.open_read = open_read
        self.limiter = limiter
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    def _keys_checked(self, scope: Scope) -> bool:
        """Whether this request goes through the key checks: always with auth on; with ``local``
        when it is not provably local, or when it sends one of our keys anyway (a local integration
        that has one is that key's holder: its sessions, its scopes). Other bearer tokens from this
        machine are ignored: OpenAI clients must send *some* key (``api_key="unused"``)."""
        if self.mode == "on":
            return True
        if self.mode != "local":
            return False
        return (_bearer(scope) or "").startswith(TOKEN_PREFIX) or not is_local_request(scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path = route_path(scope)
        needed = required_scope(method, path)
        if needed is None:
            await self.app(scope, receive, send)
            return
        key: ApiKey | None = None
        if self._keys_checked(scope):
            token = _bearer(scope)
            if token and self.store is not None:
                key = self.store.verify(token)
            if scope["type"] == "websocket" and (key is None or not key.allows(needed)):
                await send({"type": "websocket.close", "code": 1008})
                return
            if token is not None and key is None:
                challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                await send_error(scope, send, 401, "invalid, unknown or revoked API key", None, challenge)
                return
            if key is None and not (self.open_read and needed is READ):
                message = (
                    "an API key is required: send 'Authorization: Bearer kgnlp_…' "
                    "(an admin creates one with: kgnlp keys create --scopes read --name NAME)"
                )
                await send_error(scope, send, 401, message, None, {"WWW-Authenticate": "Bearer"})
                return
            if key is not None and not key.allows(needed):
                log.info("key %s denied %s %s (needs %s)", key.id, method, path, needed.value)
                challenge = {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed.value}"'}
                message = f"API key {key.id} lacks the {needed.value!r} scope needed for {method} {path}"
                await send_error(scope, send, 403, message, None, challenge)
                return
        elif self.mode == "off" and "*" not in self.allowed_hosts:
            host = host_name(scope)
            if not is_loopback_host(host) and host not in self.allowed_hosts:
                message = (
                    f"Host {host!r} is not accepted while auth is off (a guard against DNS rebinding): "
                    "use a loopback name, list it in auth.allowed_hosts, or turn auth on"
                )
                await send_error(scope, send, 400, message)
                return
        scope.setdefault("state", {})["api_key"] = key
        if self.limiter is not None:
            client = scope.get("client")
            identity = f"key:{key.id}" if key else f"addr:{client[0] if client else 'unknown'}"
            retry_after = self.limiter.hit(identity, key.rate_limit if key else None, anonymous=key is None)
            if retry_after is not None:
                message = f"rate limit exceeded; retry in {retry_after} s"
                await send_error(scope, send, 429, message, None, {"Retry-After": str(retry_after)})
                return
        await self.app(scope, receive, send)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the key store (``app.state.keys``), the auth + rate-limit middleware and CORS.

    Call after inner middleware (body caps) and before outer ones (request ids, metrics):
    CORS ends up outside auth so that preflight requests need no key.

    Args:
        app: the application.
        settings: the service settings (``auth``, ``limits``, ``server.cors_origins``).
    """
    from apps.core.ratelimit import RateLimiter

    mode = settings.auth.mode(settings.server)
    store = KeyStore.for_settings(settings)
    app.state.keys = store
    if mode == "on" and not store.has_keys():
        log.warning(
            "auth is on and the key store (%s) has no active key: every request but /health/* gets 401; "
            "create a key with: kgnlp keys create --scopes admin --name ops",
            store,
        )
    elif mode == "local":
        log.info("auth: requests from this machine (loopback socket and Host, no proxy headers) need no key")
    if mode == "off" and not settings.server.is_loopback:
        log.warning("auth is OFF while binding %s: anyone who can reach it can use every route", settings.server.host)
    lim = settings.limits
    limiter = RateLimiter(lim.rate, lim.anonymous_rate, lim.storage_uri) if lim.enabled else None
    app.add_middleware(
        ApiKeyAuth,
        store=store,
        mode=mode,
        open_read=settings.auth.open_read,
        limiter=limiter,
        allowed_hosts=settings.auth.allowed_hosts,
    )
    if settings.server.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
