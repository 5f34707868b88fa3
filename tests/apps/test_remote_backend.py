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


def test_adapter_model_names_map_then_template() -> None:
    """#20: an adapter is asked for by its map entry, else by the template (default: its own
    name, as vLLM names ``--lora-modules name=path``); mapped adapters are served too."""
    gen = RemoteGenerator("http://unused/v1", "base", adapters=["plain"], model_map={"cs": "cs-v2"})
    assert gen.adapter_names() == ["plain", "cs"]
    assert [gen._body(Q, P, a, stream=False)["model"] for a in (None, "plain", "cs")] == ["base", "plain", "cs-v2"]
    old = RemoteGenerator("http://unused/v1", "base", adapters=["plain"], adapter_model="{base}:{adapter}")
    assert old.served_model("plain") == "base:plain"


def test_remote_settings_are_validated_at_load() -> None:
    from apps.core.settings import load_settings
    from kgnlp.errors import ConfigurationError

    m = load_settings(models={"backend": "remote", "remote_url": "http://x/v1"}).models
    assert m.remote_adapter_model == "{adapter}" and m.remote_model_map == {} and m.remote_max_concurrent == 16
    for bad in (
        {"remote_adapter_model": "{model}"},
        {"remote_adapter_model": "{base}"},
        {"remote_model_map": {"a": " "}},
    ):
        with pytest.raises(ConfigurationError, match="remote_"):
            load_settings(models=bad)


@pytest.fixture(scope="module")
def front(service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service on ``KGNLP_MODELS__BACKEND=remote``, its generator the ``service`` fixture over
    real HTTP (our own server stands in for vLLM: it serves each adapter under its own name)."""
    from apps.core.settings import load_settings
    from apps.main import create_app

    first = service.services.settings
    state = tmp_path_factory.mktemp("front")
    settings = load_settings(
        home=first.home,
        graph={"path": first.graph.path},
        models={
            "backend": "remote",
            "remote_url": f"{service.url}/v1",
            "remote_adapters": ["customer_service"],
            "remote_model_map": {"renamed": "alpha"},  # served there as "alpha"
        },
        customer_service={"generation_timeout_s": 120},  # a shared CI CPU: a remote answer is not a fallback
        auth={"keys_path": state / "keys.sqlite"},
        database_url=f"sqlite:///{state / 'state.sqlite'}",
    )
    app = create_app(settings)
    with LiveServer(app) as live:
        assert app.state.services.generation.max_concurrent == 16  # sized for a batching server
        yield live.url


def test_service_on_the_remote_backend_end_to_end(service: Any, front: str) -> None:
    """#20: chat, streamed chat, a mapped adapter and the customer-service model through the
    remote backend, each answered by the first server; an unknown adapter is a 404."""
    import json

    import httpx
    import openai

    base = "smollm2-135m-instruct"
    client = openai.OpenAI(base_url=f"{front}/v1", api_key="unused", max_retries=0)
    direct = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert {base, f"{base}:customer_service", f"{base}:renamed", "customer-service"} <= set(ids)
    q = [{"role": "user", "content": "What is the capital of France?"}]
    greedy: dict[str, Any] = {"messages": q, "max_tokens": 8, "temperature": 0}
    want = direct.chat.completions.create(model=base, **greedy).choices[0].message.content
    r = client.chat.completions.create(model=base, **greedy)
    assert r.choices[0].message.content == want and want
    chunks = list(client.chat.completions.create(model=base, stream=True, **greedy))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    # the mapped adapter reaches the first server as model "alpha": the same text as asking it directly
    alpha = direct.chat.completions.create(model="alpha", **greedy).choices[0].message.content
    assert alpha == direct.chat.completions.create(model=f"{base}:alpha", **greedy).choices[0].message.content
    assert client.chat.completions.create(model=f"{base}:renamed", **greedy).choices[0].message.content == alpha
    # the customer-service model writes its answer with the adapter, served remotely as "customer_service"
    sid = httpx.post(f"{front}/cs/sessions", timeout=30).json()["session_id"]
    cs = client.chat.completions.create(
        model="customer-service", messages=[{"role": "user", "content": "how do I get a refund?"}], user=sid
    )  # type: ignore[arg-type]
    extra = cs.model_extra["kgnlp"]  # type: ignore[index]
    assert extra["mode"] == "generated" and not extra["fallback"] and cs.choices[0].message.content, json.dumps(extra)
    with pytest.raises(openai.NotFoundError, match="adapter 'nope' not found"):
        client.chat.completions.create(model=f"{base}:nope", **greedy)
