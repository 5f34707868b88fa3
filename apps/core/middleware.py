"""Request ids and body-size caps, as plain ASGI middleware (no buffering of streams)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "RequestId"]

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestId:
    """Give every request an id (``X-Request-ID`` from the client if sane, else a uuid4)
    and echo it in the response headers and in ``request.state.request_id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodySizeLimit:
    """Answer 413 before reading more than ``max_bytes`` of a request body, and 422 for a JSON body
    whose text holds a NUL character (``\\u0000``): PostgreSQL text cannot store one, and no route
    wants one, so it is refused the same way on every backend."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        seen = 0
        is_json = b"json" in headers.get(b"content-type", b"").lower()
        tail = b""  # the end of the previous chunk: an escape may straddle two chunks

        async def limited_receive() -> Message:
            nonlocal seen, tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    raise _TooLarge
                if is_json and _JSON_NUL.search(tail + chunk):
                    raise _NulInJson
                tail = (tail + chunk)[-64:]
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._reject(scope, send)
        except _NulInJson:
            from apps.core.errors import send_error

            message = "request text contains a NUL character (\\u0000), which is not allowed"
            await send_error(scope, send, 422, message)

    async def _reject(self, scope: Scope, send: Send) -> None:
        request_id: Any = scope.get("state", {}).get("request_id")
        body = json.dumps(
            {
                "error": {
                    "message": f"request body exceeds {self.max_bytes} bytes",
                    "type": "request_too_large",
                    "param": None,
                    "code": 413,
                },
                "request_id": request_id,
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# BaseException: FastAPI turns an Exception raised while it reads the body into a 400.
class _TooLarge(BaseException):
    pass


class _NulInJson(BaseException):
    pass


# `\u0000` not itself escaped (preceded by an even number of backslashes)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
