"""Per-request observation: request-id context for logs, Prometheus series, one access-log line.

Labels use the route template (``/kg/entities/{entity_id}``), never the raw path, and
``unmatched`` for paths no route serves, so scanners cannot blow up the series count. Query
strings are never logged.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.core.logging_setup import request_id_var
from apps.core.metrics import Metrics
from apps.core.security import route_path

if TYPE_CHECKING:
    from fastapi import FastAPI

    from apps.core.settings import Settings

__all__ = ["RequestObserver", "RouteTemplates", "install_observability"]

access_log = logging.getLogger("kgnlp.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_QUIET = ("/health/", "/metrics")  # probes and scrapes: access-logged at DEBUG only
UNMATCHED = "unmatched"


class RouteTemplates:
    """Map a request path to the template of the route that serves it.

    Args:
        app: the FastAPI app (its routes are read lazily, after every router is included).
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], str]] = []
        self._built_for = -1

    def _build(self) -> None:
        try:
            from fastapi.routing import iter_route_contexts

            routes: list[Any] = list(iter_route_contexts(self.app.routes))
        except ImportError:  # FastAPI before lazily included routers
            routes = list(self.app.routes)
        table = []
        for r in routes:
            regex, template = getattr(r, "path_regex", None), getattr(r, "path_format", None)
            if regex is not None and template:
                table.append((regex, template))
        self._table = table
        self._built_for = len(self.app.routes)

    def template(self, path: str) -> str:
        """The route template for ``path``, or ``"unmatched"``.

        Args:
            path: the request path.

        Returns:
            the template.
        """
        if self._built_for != len(self.app.routes):
            self._build()
        for regex, template in self._table:
            if regex.match(path):
                return template
        return UNMATCHED


class RequestObserver:
    """Time every HTTP request, record it in :class:`Metrics`, log it, and expose its id to logs.

    Sits inside :class:`apps.core.middleware.RequestId` (which sets ``scope["state"]["request_id"]``).
    Streams pass through unbuffered; their duration ends with the last byte.

    Args:
        app: the wrapped ASGI app.
        metrics: where to record (None: no metrics).
        routes: path → template.
        log_requests: write one ``kgnlp.access`` line per request.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics | None, routes: RouteTemplates, log_requests: bool = True
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id_var.set(state.get("request_id"))
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = self.routes.template(route_path(scope))
            if self.metrics is not None:
                self.metrics.in_flight.dec()
                self.metrics.observe(method, route, status, seconds)
            if self.log_requests:
                key = state.get("api_key")
                path = scope["path"] if route == UNMATCHED else route
                level = logging.DEBUG if path.startswith(_QUIET) else logging.INFO
                access_log.log(
                    level,
                    "%s %s %d %.1fms",
                    method,
                    path,
                    status,
                    seconds * 1000,
                    extra={
                        "http": {
                            "method": method,
                            "route": path,
                            "status": status,
                            "duration_ms": round(seconds * 1000, 2),
                            "key_id": getattr(key, "id", None),
                        }
                    },
                )


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Add ``GET /metrics`` (when enabled) and the request observer middleware.

    Call after the auth middleware is added, so that the observer sits outside it and counts
    401/403/429 answers too.

    Args:
        app: the application.
        settings: ``settings.observability``.
    """
    obs = settings.observability
    metrics = Metrics(lambda: getattr(app.state, "services", None)) if obs.metrics else None
    app.state.metrics = metrics
    if metrics is not None:

        async def prometheus_metrics(request: Request) -> Response:
            body, content_type = metrics.render()
            return Response(body, media_type=content_type)

        app.add_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)
    app.add_middleware(RequestObserver, metrics=metrics, routes=RouteTemplates(app), log_requests=obs.access_log)
