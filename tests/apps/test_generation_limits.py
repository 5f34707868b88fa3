"""#19 item 3 over real HTTP on the torch engine (the llama.cpp engine's are in test_openai_api.py):
over-context prompts and oversized requests get 422 naming the limit, and a decode past its
deadline ends as finish_reason "length", which the official client reads as a cut answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from apps.openai_compat.schemas import MAX_REQUEST_CHARS

NAME = "smollm2-135m-instruct"
LONG = [{"role": "user", "content": "Count from 1 to 500, one number per line."}]  # greedy: 122 tokens


@pytest.fixture(scope="module")
def torch_service(local_generator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from apps.core.services import Services
    from apps.core.settings import load_settings
    from apps.main import create_app
    from models.concurrency import GenerationQueue
    from models.generation import LocalGenerator
    from tests.conftest import LiveServer

    home = tmp_path_factory.mktemp("limits")
    settings = load_settings(home=home, auth={"keys_path": home / "keys.sqlite"})
    gen = LocalGenerator(local_generator.model, local_generator.tokenizer, NAME, context_tokens=2048)
    services = Services(settings=settings, generator=gen, generation=GenerationQueue(gen, 1, 4, decode_timeout_s=1.0))
    with LiveServer(create_app(settings, services=services)) as live:
        yield live.url


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_over_the_context_is_refused_with_the_limit_named(torch_service: str, stream: bool) -> None:
    messages = [{"role": "user", "content": ("refund , . " * 3200)[:32_000]}]  # ~10k tokens, over 2,048
    r = httpx.post(f"{torch_service}/v1/chat/completions", timeout=60,
                   json={"model": NAME, "messages": messages, "max_tokens": 16, "stream": stream})  # fmt: skip
    assert r.status_code == 422, r.text
    assert "exceeds the context of 2048" in r.json()["error"]["message"]


def test_a_request_over_the_total_character_limit_is_refused(torch_service: str) -> None:
    part = {"role": "user", "content": "x" * 30_000}  # each message within its own 32,000 limit
    r = httpx.post(f"{torch_service}/v1/chat/completions", timeout=60,
                   json={"model": NAME, "messages": [part] * 5, "max_tokens": 4})  # fmt: skip
    assert r.status_code == 422, r.text
    assert f"150000 characters in all; the limit is {MAX_REQUEST_CHARS}" in r.json()["error"]["message"]


def test_a_decode_past_its_deadline_ends_as_length_for_the_openai_client(torch_service: str) -> None:
    client = openai.OpenAI(base_url=f"{torch_service}/v1", api_key="unused", max_retries=0)
    t0 = time.monotonic()
    r = client.chat.completions.create(model=NAME, messages=LONG, max_tokens=1000)  # type: ignore[arg-type]
    took = time.monotonic() - t0
    assert r.choices[0].finish_reason == "length" and r.usage is not None, r
    assert r.usage.completion_tokens < 100 and took < 6, (r.usage, took)
    stream = client.chat.completions.create(model=NAME, messages=LONG, max_tokens=1000, stream=True)  # type: ignore[call-overload]
    finishes = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
