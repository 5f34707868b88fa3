"""A full generation queue answers 503 with Retry-After over real HTTP (slow fake generator)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from apps.core.services import Services
from apps.core.settings import load_settings
from apps.main import create_app
from models.concurrency import GenerationQueue
from tests.conftest import LiveServer
from tests.models.test_concurrency import SlowGenerator


class NamedSlow(SlowGenerator):
    name = "slow"

    def adapter_names(self) -> list[str]:
        return []


def test_full_queue_gives_503_with_retry_after(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    gen = NamedSlow(delay=1.0)
    services = Services(settings=settings, generator=gen, generation=GenerationQueue(gen, 1, 1))
    body = {"model": "slow", "messages": [{"role": "user", "content": "hi"}]}
    with LiveServer(create_app(settings, services=services)) as live:

        async def fire() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(
                    *(client.post(f"{live.url}/v1/chat/completions", json=body) for _ in range(4))
                )

        responses = asyncio.run(fire())
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503]
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "2"
    assert "queue is full" in refused.json()["error"]["message"]
