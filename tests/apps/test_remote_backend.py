"""The remote generator against real HTTP servers: our own endpoint and a flaky test server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from kgnlp.errors import ModelUnavailableError, NotFoundError, OverloadedError
from models.generation import ChatMessage, GenerationParams
from models.remote import RemoteGenerator
from tests.conftest import LiveServer, free_port

Q = [ChatMessage("user", "What is the capital of France?")]
P = GenerationParams(max_tokens=12)


@pytest.fixture(scope="module")
def remote(service: Any) -> Iterator[RemoteGenerator]:
    gen = RemoteGenerator(f"{service.url}/v1", "smollm2-135m-instruct", adapters=["alpha"], max_retries=0)
    yield gen
    gen.close()


def test_remote_matches_local(service: Any, remote: RemoteGenerator) -> None:
    local = service.services.generator
    assert remote.generate(Q, P).text == local.generate(Q, P).text
    assert remote.generate(Q, P, adapter="alpha").text == local.generate(Q, P, adapter="alpha").text


def test_remote_stream_passthrough(remote: RemoteGenerator) -> None:
    deltas = list(remote.stream(Q, P))
    assert len(deltas) > 1 and "".join(deltas) == remote.generate(Q, P).text


def test_remote_errors_are_translated(service: Any) -> None:
    wrong = RemoteGenerator(f"{service.url}/v1", "no-such-model", max_retries=0)
    with pytest.raises(NotFoundError, match="404"):
        wrong.generate(Q, P)
    closed = RemoteGenerator(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1, backoff_s=0.01)
    with pytest.raises(ModelUnavailableError, match="unreachable"):
        closed.generate(Q, P)


def _flaky_app(failures: int, status: int) -> tuple[FastAPI, list[int]]:
    app = FastAPI()
    calls: list[int] = []

    @app.post("/v1/chat/completions")
    def complete() -> JSONResponse:
        calls.append(1)
        if len(calls) <= failures:
            return JSONResponse({"error": {"message": "busy"}}, status_code=status, headers={"Retry-After": "0"})
        return JSONResponse(
            {
                "choices": [{"message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1},
            }
        )

    return app, calls


def test_retries_with_backoff_on_503_then_succeeds() -> None:
    app, calls = _flaky_app(failures=2, status=503)
    with LiveServer(app) as live:
        gen = RemoteGenerator(f"{live.url}/v1", "m", max_retries=3, backoff_s=0.01)
        result = gen.generate(Q, P)
    assert result.text == "ok" and result.completion_tokens == 1 and len(calls) == 3


def test_gives_up_after_max_retries_with_overloaded() -> None:
    app, calls = _flaky_app(failures=10, status=429)
    with LiveServer(app) as live:
        gen = RemoteGenerator(f"{live.url}/v1", "m", max_retries=2, backoff_s=0.01)
        with pytest.raises(OverloadedError, match="429"):
            gen.generate(Q, P)
    assert len(calls) == 3


def test_client_errors_are_not_retried() -> None:
    app, calls = _flaky_app(failures=10, status=400)
    with LiveServer(app) as live:
        gen = RemoteGenerator(f"{live.url}/v1", "m", max_retries=3, backoff_s=0.01)
        with pytest.raises(Exception, match="400"):
            gen.generate(Q, P)
    assert len(calls) == 1


def test_a_stated_context_is_checked_before_the_request_is_sent() -> None:
    """#19 item 3: with ``context_tokens`` the remote backend refuses an over-context request
    with the local engines' 422 error, sending nothing; without it the server decides."""
    from kgnlp.errors import ValidationError

    app, calls = _flaky_app(failures=0, status=200)
    long = [ChatMessage("user", "word " * 3000)]  # ~3,000 tokens counted at 4 characters a token
    with LiveServer(app) as live:
        checked = RemoteGenerator(f"{live.url}/v1", "m", max_retries=0, context_tokens=2048)
        for call in (checked.generate, lambda m, p: list(checked.stream(m, p)), checked.check_fits):
            with pytest.raises(ValidationError, match="max_tokens 12 exceeds the context of 2048"):
                call(long, P)
        assert not calls and checked.generate(Q, P).text == "ok"
        unchecked = RemoteGenerator(f"{live.url}/v1", "m", max_retries=0)
        assert unchecked.generate(long, P).text == "ok" and len(calls) == 2
