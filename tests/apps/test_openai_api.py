"""The OpenAI-compatible API, spoken to by the official ``openai`` client over real HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

BASE = "smollm2-135m-instruct"
Q = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def client(service: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)


def test_models_list_through_the_client(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [
        BASE, f"{BASE}:alpha", f"{BASE}:customer_service", "alpha", "customer_service", "customer-service"
    ]  # fmt: skip


def test_non_streaming_completion(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=BASE, messages=Q, max_tokens=16)  # type: ignore[arg-type]
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason in ("stop", "length") and r.model == BASE
    assert r.usage is not None and r.usage.prompt_tokens > 5 and 0 < r.usage.completion_tokens <= 16
    assert r.id.startswith("chatcmpl-")


def test_streaming_equals_non_streaming(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=BASE, messages=Q, max_tokens=20)  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model=BASE, messages=Q, max_tokens=20, stream=True, stream_options={"include_usage": True}
    )  # type: ignore[call-overload]
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    usage = chunks[-1].usage
    assert usage is not None and full.usage is not None
    # streamed usage re-tokenizes the text, so it does not count the end-of-sequence token
    assert full.usage.completion_tokens - 1 <= usage.completion_tokens <= full.usage.completion_tokens


def test_adapter_by_model_suffix_and_by_field(client: openai.OpenAI) -> None:
    base = client.chat.completions.create(model=BASE, messages=Q, max_tokens=8)  # type: ignore[arg-type]
    alpha = client.chat.completions.create(model=f"{BASE}:alpha", messages=Q, max_tokens=8)  # type: ignore[arg-type]
    field = client.chat.completions.create(model=BASE, messages=Q, max_tokens=8, extra_body={"adapter": "alpha"})  # type: ignore[arg-type]
    assert alpha.choices[0].message.content != base.choices[0].message.content
    assert field.choices[0].message.content == alpha.choices[0].message.content
    assert alpha.model == f"{BASE}:alpha"


def test_stop_sequence(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=BASE, messages=Q, max_tokens=16, stop=[" is "])  # type: ignore[arg-type]
    assert r.choices[0].message.content == "The capital of France"
    assert r.choices[0].finish_reason == "stop"


def test_client_sees_our_error_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match=f"available: {BASE}"):
        client.chat.completions.create(model="gpt-4o", messages=Q)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError, match="adapter 'nope' not found"):
        client.chat.completions.create(model=f"{BASE}:nope", messages=Q)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": BASE, "messages": []}, 422, "messages"),
        ({"model": BASE, "messages": [{"role": "user", "content": ""}]}, 422, "non-empty content"),
        ({"model": BASE, "messages": [{"role": "wizard", "content": "hi"}]}, 422, "messages.0.role"),
        ({"model": BASE, "messages": [{"role": "user", "content": "x" * 1_000_000}]}, 422, "limit is 32000"),
        ({"model": BASE, "messages": Q, "max_tokens": -1}, 422, "max_tokens"),
        ({"model": BASE, "messages": Q, "n": 2}, 422, "n:"),
        ({"model": BASE, "messages": Q, "temperature": "hot"}, 422, "temperature"),
        ({"messages": Q}, 422, "model: Field required"),
        ({"model": "unknown", "messages": Q}, 404, "not found"),
        ({"model": "kgnlp-cs", "messages": Q}, 404, "customer_service, customer-service"),  # the pipeline is named too
        ({"model": "other:customer_service", "messages": Q}, 404, "not found"),
        ({"model": "customer-service", "messages": Q, "user": "has spaces!"}, 422, "session id"),
        ({"model": "customer-service", "messages": [{"role": "user", "content": "x" * 5000}]}, 422, "at most 4000"),
        ({"model": BASE, "messages": [{"role": "user", "content": "x" * 30_000}] * 5}, 422, "limit is 128000"),
    ],
)
def test_bad_input_is_a_clear_4xx(service: Any, body: dict[str, Any], status: int, fragment: str) -> None:
    r = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]


def test_invalid_json_is_422(service: Any) -> None:
    r = httpx.post(
        f"{service.url}/v1/chat/completions",
        content=b'{"model": "x", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "JSON" in r.json()["error"]["message"]


def test_client_disconnect_stops_generation(service: Any) -> None:
    body = {"model": BASE, "messages": Q, "max_tokens": 400, "stream": True, "temperature": 0.8, "seed": 1}
    with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["object"] == "chat.completion.chunk"
    queue = service.services.generation
    deadline = time.time() + 10
    while queue.depth and time.time() < deadline:
        time.sleep(0.05)
    assert queue.depth == 0, "decoding went on after the client left"


def test_admin_hot_loads_and_unloads_adapters(service: Any, generator_path: Any, tmp_path: Any) -> None:
    from tests.models.test_adapters import _make_adapter

    url = f"{service.url}/admin/adapters"
    assert httpx.get(url).json()["available"] == ["alpha", "customer_service"]
    path = _make_adapter(generator_path, tmp_path / "delta", seed=4)
    r = httpx.post(url, json={"name": "delta", "path": str(path)}, timeout=120)
    assert r.status_code == 201 and "delta" in r.json()["loaded"]
    ids = [m["id"] for m in httpx.get(f"{service.url}/v1/models").json()["data"]]
    assert f"{BASE}:delta" in ids
    body = {"model": f"{BASE}:delta", "messages": Q, "max_tokens": 6}
    assert httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=60).status_code == 200
    assert httpx.delete(f"{url}/delta").json()["available"] == ["alpha", "customer_service"]
    assert httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=60).status_code == 404
    bad = httpx.post(url, json={"name": "x", "path": str(tmp_path)})
    assert bad.status_code == 404 and "adapter_config.json" in bad.json()["error"]["message"]
    assert httpx.delete(f"{url}/nope").status_code == 404


@pytest.mark.parametrize("how", ["missing weights", "corrupt weights"])
def test_a_failed_adapter_reload_over_http_keeps_the_working_adapter(service: Any, tmp_path: Any, how: str) -> None:
    """#19 item 8: POST /admin/adapters with a broken folder under a serving adapter's name
    answers 422 naming the problem; the adapter answers as before (on the configured engine)."""
    from tests.models.test_adapters import _broken_copy

    body = {"model": f"{BASE}:alpha", "messages": Q, "max_tokens": 12}
    before = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=60).json()
    alpha = service.services.settings.models.adapter_dir / "alpha"
    broken = _broken_copy(alpha, tmp_path / "broken", how)
    r = httpx.post(f"{service.url}/admin/adapters", json={"name": "alpha", "path": str(broken)}, timeout=120)
    assert r.status_code == 422, r.text
    assert "adapter_model" in r.json()["error"]["message"] or "could not be loaded" in r.json()["error"]["message"]
    after = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=60).json()
    assert after["choices"][0]["message"]["content"] == before["choices"][0]["message"]["content"]
    assert "alpha" in httpx.get(f"{service.url}/admin/adapters").json()["loaded"]


def test_concurrent_requests_wait_their_turn_and_keep_their_own_answers(client: openai.OpenAI, service: Any) -> None:
    """On the llama.cpp engine (the default here) waiting requests decode one after another; on
    torch they share one static batch (tests/models/test_concurrency.py checks that on the real
    model). Either way each gets the answer it gets alone."""
    from concurrent.futures import ThreadPoolExecutor

    asks = [
        (BASE, "What is the capital of France? Answer in one word."),
        (f"{BASE}:alpha", "What is the capital of France? Answer in one word."),
        (BASE, "Name a primary colour."),
    ]

    def ask(model_and_text: tuple[str, str]) -> str:
        model, text = model_and_text
        messages = [{"role": "user", "content": text}]
        r = client.chat.completions.create(model=model, messages=messages, max_tokens=12)  # type: ignore[arg-type]
        return r.choices[0].message.content or ""

    alone = [ask(a) for a in asks]
    queue = service.services.generation
    before = queue.batches
    # hold the only decode slot so that the three requests queue up, then release it
    queue._slots.acquire()
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(ask, a) for a in asks]
        deadline = time.time() + 30
        while len(queue._pending) < 3 and time.time() < deadline:
            time.sleep(0.02)
        queue._slots.release()
        together = [f.result() for f in futures]
    batching = hasattr(service.services.generator, "generate_batch")
    assert queue.max_batch == (4 if batching else 1)
    assert queue.batches == before + (1 if batching else 0)
    assert together == alone


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_over_the_context_is_refused_with_the_limit_named(service: Any, stream: bool) -> None:
    messages = [{"role": "user", "content": ("refund , . " * 3200)[:32_000]}]  # ~10k tokens, over 2,048
    r = httpx.post(f"{service.url}/v1/chat/completions", timeout=60,
                   json={"model": BASE, "messages": messages, "max_tokens": 16, "stream": stream})  # fmt: skip
    assert r.status_code == 422, r.text
    assert "exceeds the context of 2048" in r.json()["error"]["message"]
    ok = {"model": BASE, "messages": Q, "max_tokens": 4}  # the generator is fine afterwards
    assert httpx.post(f"{service.url}/v1/chat/completions", json=ok, timeout=60).status_code == 200
