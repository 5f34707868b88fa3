"""The one place where errors become HTTP responses.

Every 4xx/5xx body has the OpenAI error shape so that OpenAI clients and humans
both get a readable message: ``{"error": {"message", "type", "param", "code"},
"request_id"}``.

Server errors say what went wrong only to the operator (:func:`caller_is_operator`: an
``admin`` key, or a request that needs no key). Anyone else gets a generic 500 that names the
request id, so that the operator can find the full message and traceback in the log; a 503's
message (model unavailable, overloaded) is kept, with file paths and URLs replaced by
``<path>`` / ``<url>``, and so is a 404's.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from apps.core.connection import is_local_request
from kgnlp.errors import (
    ConfigurationError,
    ConflictError,
    KgnlpError,
    ModelUnavailableError,
    NotFoundError,
    OverloadedError,
    ValidationError,
)

__all__ = ["caller_is_operator", "error_body", "install_error_handlers", "redact", "send_error"]

log = logging.getLogger("kgnlp.api")

_STATUS: list[tuple[type[KgnlpError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
    (ValidationError, 422, "invalid_request_error"),
    (OverloadedError, 503, "overloaded"),
    (ModelUnavailableError, 503, "model_unavailable"),
    (ConfigurationError, 500, "configuration_error"),
]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "request_too_large",
          422: "invalid_request_error", 429: "rate_limit_exceeded", 503: "overloaded"}  # fmt: skip


# A URL (any scheme: http, bolt, postgresql+psycopg…), a POSIX path of two or more segments
# (absolute or ~/…), a Windows drive path.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s'\"<>()\[\]{}]*[^\s'\"<>()\[\]{}:;,.!?]")
_PATH = re.compile(r"(?<![\w.~/-])~?/[\w.@+~-]+(?:/[\w.@+~-]*)+|\b[A-Za-z]:\\[^\s'\"<>]+")


def redact(message: str) -> str:
    """``message`` with URLs and file-system paths replaced by ``<url>`` / ``<path>``."""
    return _PATH.sub("<path>", _URL.sub("<url>", message))


def caller_is_operator(request: Request) -> bool:
    """Whether the caller may read internal detail (error causes, paths, URLs in ``/health/ready``).

    True for a request that presented a valid key with the ``admin`` scope, and for one that needs
    no key at all (auth off, or a provably local request of the loopback demo): such a caller can
    already use every admin route. False when the app's settings cannot be found (fail closed).
    """
    settings = getattr(getattr(request.app.state, "services", None), "settings", None)
    if settings is None:
        return False
    if _auth_mode(settings, request.scope) == "off":
        return True
    state = request.scope.get("state") or {}
    # every non-public route: the auth middleware checked the token; a public one (/health/*): it did not
    key = state["api_key"] if "api_key" in state else _verify_bearer(request)
    from apps.core.keystore import Scope as KeyScope

    return key is not None and key.allows(KeyScope.ADMIN)


def _auth_mode(settings: Any, scope: Scope) -> str:
    """``on`` or ``off`` for this request, as the auth middleware decides it (``local``: by the connection)."""
    mode = str(settings.auth.mode(settings.server))
    if mode == "local":
        return "off" if is_local_request(scope) else "on"
    return mode


def _verify_bearer(request: Request) -> Any:
    store = getattr(request.app.state, "keys", None)
    kind, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if store is None or kind.lower() != "bearer" or not token.strip():
        return None
    try:
        return store.verify(token.strip())
    except Exception:  # a broken key store must not break the public health route
        log.exception("key store failed while checking a key on %s", request.url.path)
        return None


def internal_error_message(request: Request) -> str:
    """The generic message of a 500 for callers who are not the operator."""
    request_id = getattr(request.state, "request_id", None)
    return f"internal error; quote request id {request_id} to the operator (the server log has the cause)"


def error_body(
    request: Request, status: int, message: str, param: str | None = None, type_: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": type_ or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": param,
            "code": status,
        },
        "request_id": getattr(request.state, "request_id", None),
    }


async def send_error(
    scope: Scope, send: Send, status: int, message: str, type_: str | None = None, headers: dict[str, str] | None = None
) -> None:
    """Answer from pure ASGI middleware with the same JSON error body as the handlers below.

    Args:
        scope: the request scope (its ``state.request_id`` goes into the body).
        send: the ASGI send callable.
        status: HTTP status.
        message: what went wrong, for humans.
        type_: the error type; default from the status.
        headers: extra response headers (``WWW-Authenticate``, ``Retry-After`` …).
    """
    request_id = (scope.get("state") or {}).get("request_id")
    body = {
        "error": {
            "message": message,
            "type": type_ or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
            "param": None,
            "code": status,
        },
        "request_id": request_id,
    }
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts, first_param = [], None
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        first_param = first_param or where
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts[:10]) or "invalid request", first_param


def install_error_handlers(app: FastAPI) -> None:
    """Register JSON handlers for HTTP errors, validation errors, kgnlp errors and the rest."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        cause = exc.__cause__  # FastAPI's 400 "error parsing the body" hides why; say it
        if isinstance(cause, UnicodeDecodeError):
            message = f"request body is not valid UTF-8 (byte {cause.start}: {cause.reason})"
        elif isinstance(cause, RecursionError):
            message = "request JSON is nested too deeply"
        if exc.status_code == 404 and message == "Not Found":  # the router's: no route has this path
            message = f"no route serves {request.method} {request.url.path[:200]!r} (see /docs for the API)"
        elif exc.status_code == 405 and message == "Method Not Allowed":
            message = f"{request.method} is not allowed on {request.url.path[:200]!r} (see /docs for the API)"
        if exc.status_code >= 500:  # a route's own 5xx may quote a store error: paths and URLs for the operator
            rid = getattr(request.state, "request_id", None)
            log.warning("HTTP %s on %s %s (request %s): %s", exc.status_code, request.method, request.url.path, rid,
                        message)  # fmt: skip
        if (exc.status_code >= 500 or exc.status_code == 404) and not caller_is_operator(request):
            message = redact(message)
        return JSONResponse(error_body(request, exc.status_code, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(error_body(request, 422, message, param), 422)

    @app.exception_handler(KgnlpError)
    async def _kgnlp(request: Request, exc: KgnlpError) -> JSONResponse:
        status, type_ = next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "server_error"))
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, OverloadedError) else None
        message = str(exc)
        rid = getattr(request.state, "request_id", None)
        if status == 503:  # expected (a model not set up, a full queue): the log gets the whole message
            log.warning("%s on %s %s (request %s): %s", type_, request.method, request.url.path, rid, message)
        elif status >= 500:
            log.error("internal error on %s %s (request %s): %s", request.method, request.url.path, rid, message,
                      exc_info=exc)  # fmt: skip
        if (status >= 500 or status == 404) and not caller_is_operator(request):
            message = internal_error_message(request) if status == 500 else redact(message)
        return JSONResponse(error_body(request, status, message, type_=type_), status, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        log.error("unhandled error on %s %s (request %s)", request.method, request.url.path, rid, exc_info=exc)
        if caller_is_operator(request):
            message = f"internal server error: {type(exc).__name__}: {exc}"[:4000]
        else:
            message = internal_error_message(request)
        return JSONResponse(error_body(request, 500, message), 500)
