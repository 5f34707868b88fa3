"""The one place where errors become HTTP responses.

Every 4xx/5xx body has the OpenAI error shape so that OpenAI clients and humans
both get a readable message: ``{"error": {"message", "type", "param", "code"},
"request_id"}``. Unexpected exceptions are logged with their traceback and
answered with a generic 500 that leaks nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from kgnlp.errors import (
    ConfigurationError,
    KgnlpError,
    ModelUnavailableError,
    NotFoundError,
    OverloadedError,
    ValidationError,
)

__all__ = ["error_body", "install_error_handlers", "send_error"]

log = logging.getLogger("kgnlp.api")

_STATUS: list[tuple[type[KgnlpError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (ValidationError, 422, "invalid_request_error"),
    (OverloadedError, 503, "overloaded"),
    (ModelUnavailableError, 503, "model_unavailable"),
    (ConfigurationError, 500, "configuration_error"),
]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "request_too_large",
          422: "invalid_request_error", 429: "rate_limit_exceeded", 503: "overloaded"}  # fmt: skip


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
        return JSONResponse(error_body(request, exc.status_code, message), exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(error_body(request, 422, message, param), 422)

    @app.exception_handler(KgnlpError)
    async def _kgnlp(request: Request, exc: KgnlpError) -> JSONResponse:
        status, type_ = next(((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "server_error"))
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if isinstance(exc, OverloadedError) else None
        if status >= 500 and not isinstance(exc, OverloadedError | ModelUnavailableError):
            log.error("internal error: %s", exc, exc_info=exc)
        return JSONResponse(error_body(request, status, str(exc), type_=type_), status, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(request, 500, "internal server error; see the server log"), 500)
