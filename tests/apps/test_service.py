"""The service skeleton over real HTTP: health, model list, error bodies, request ids, size caps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.core.services import build_services
from apps.core.settings import load_settings
from apps.main import create_app
from tests.conftest import local_client


@pytest.fixture(scope="module")
def server(service: Any) -> str:
    return str(service.url)


def test_live_and_ready_report_loaded_models(server: str) -> None:
    assert httpx.get(f"{server}/health/live").json() == {"status": "alive"}
    ready = httpx.get(f"{server}/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["components"]["generator"]["model"] == "smollm2-135m-instruct"
    generator = body["components"]["generator"]
    # the engine this CPU was measured fastest on, with the model's own quantization
    assert generator["engine"] in ("llama.cpp", "torch") and generator["quantization"] in ("gguf-q4_1", "int4-weight")
    assert generator["cpu"]["model"] and generator["cpu"]["cores"] >= 1
    assert body["components"]["embedder"]["dimension"] == 384


def test_graph_routes_answer_from_the_demo_graph(server: str) -> None:
    ready = httpx.get(f"{server}/health/ready").json()
    assert ready["components"]["graphs"]["available"] == ["finance", "retail"]
    mentions = httpx.post(
        f"{server}/kg/link", params={"graph": "finance"}, json={"text": "Is $NVDA doing better than AMD?"}
    )
    assert mentions.status_code == 200, mentions.text
    assert {"company:NVDA", "company:AMD"} <= {m["entity_id"] for m in mentions.json()["mentions"]}
    entity = httpx.get(f"{server}/kg/entities/company:AMD", params={"graph": "finance"})
    assert entity.status_code == 200 and entity.json()["name"] == "Advanced Micro Devices"
    missing = httpx.get(f"{server}/kg/entities/company:NOPE", params={"graph": "finance"})
    assert missing.status_code == 404 and "company:NOPE" in missing.json()["error"]["message"]


def test_models_list_is_openai_shaped(server: str) -> None:
    body = httpx.get(f"{server}/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [
        "smollm2-135m-instruct",
        "smollm2-135m-instruct:alpha",
        "smollm2-135m-instruct:customer_service",  # shipped, installed by `kgnlp cs setup`
        "alpha",  # each adapter by its own name too, as vLLM lists LoRA modules
        "customer_service",
        "customer-service",
    ]
    assert all(m["object"] == "model" for m in body["data"])


def test_unknown_route_gives_json_404_with_request_id(server: str) -> None:
    r = httpx.get(f"{server}/nope", headers={"X-Request-ID": "abc-123"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "abc-123"
    assert r.json() == {
        "error": {
            "message": "no route serves GET '/nope' (see /docs for the API)",
            "type": "not_found",
            "param": None,
            "code": 404,
        },
        "request_id": "abc-123",
    }


def test_generated_request_id_when_client_sends_none_or_garbage(server: str) -> None:
    a = httpx.get(f"{server}/health/live").headers["x-request-id"]
    b = httpx.get(f"{server}/health/live", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(a) == 32 and len(b) == 32 and a != b


def test_wrong_method_is_json_405(server: str) -> None:
    r = httpx.post(f"{server}/health/live")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"


def test_oversized_body_is_413_before_reading_it_all(server: str) -> None:
    r = httpx.post(f"{server}/health/live", content=b"x" * 3_000_000, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "exceeds 2000000 bytes" in r.json()["error"]["message"]


def test_openapi_and_docs_are_served(server: str) -> None:
    spec = httpx.get(f"{server}/openapi.json").json()
    assert "/health/ready" in spec["paths"] and "/v1/models" in spec["paths"]
    assert httpx.get(f"{server}/docs").status_code == 200


def test_not_ready_is_503(model_home: Path) -> None:
    from apps.core.services import Component, Services

    settings = load_settings(home=model_home)
    services = Services(settings=settings, components={"generator": Component("generator", "failed", {"error": "x"})})
    with local_client(create_app(settings, services=services)) as client:
        r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"


def test_build_services_can_skip_models(tmp_path: Path) -> None:
    services = build_services(load_settings(home=tmp_path, models={"load_generator": False, "load_embedder": False}))
    assert services.generator is None and services.ready
