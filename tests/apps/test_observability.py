"""Prometheus metrics, JSON logs with request ids, and PII masking."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from apps.core.logging_setup import JsonFormatter, TextFormatter, configure_logging, request_id_var
from apps.core.metrics import Metrics
from apps.core.pii import luhn_ok, mask_pii
from apps.core.services import Component

# -- PII masking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to jane.doe+shop@example.co.uk today", "write to [EMAIL] today"),
        ("card 4111 1111 1111 1111, exp 12/27", "card [CARD], exp 12/27"),
        ("card 5500-0000-0000-0004", "card [CARD]"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN] please"),
        ("to GB82WEST12345698765432.", "to [IBAN]."),
        ("order ORD-12345 and #123456 arrived", "order [ORDER_ID] and [ORDER_ID] arrived"),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [PHONE] or [PHONE]"),
        ("ring 555.123.4567 or +14155552671", "ring [PHONE] or [PHONE]"),
    ],
)
def test_mask_pii_masks(text: str, masked: str) -> None:
    assert mask_pii(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "IBAN DE89 3704 0044 0532 0130 01 fails mod-97",
        "at 2024-01-15 10:30:00 from 192.168.1.10 running v1.2.3",
        "revenue rose 12.5% to $1,234,567.89 in Q3 2024",
        "timestamp 1718000000 and issue #12",
        "NVDA beat estimates; EPS 0.68 vs 0.64",
    ],
)
def test_mask_pii_leaves_other_numbers_alone(text: str) -> None:
    assert mask_pii(text) == text


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713") and not luhn_ok("79927398710")


# -- logs --------------------------------------------------------------------------------------


def _record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.getLogger("kgnlp.test").makeRecord("kgnlp.test", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_json_formatter_carries_request_id_extras_and_masks() -> None:
    token = request_id_var.set("rid-42")
    try:
        line = JsonFormatter().format(_record("refund for %s", "bob@example.com", http={"route": "/x", "n": 3}))
    finally:
        request_id_var.reset(token)
    entry = json.loads(line)
    assert entry["request_id"] == "rid-42" and entry["level"] == "INFO" and entry["logger"] == "kgnlp.test"
    assert entry["message"] == "refund for [EMAIL]" and entry["http"] == {"route": "/x", "n": 3}
    try:
        raise ValueError("card 4111111111111111 declined")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    assert "4111111111111111" not in JsonFormatter().format(record)
    assert "4111111111111111" in JsonFormatter(mask=False).format(record)
    assert "[rid-9]" in TextFormatter().format(_record("x", request_id="rid-9"))


def test_configure_logging_is_idempotent() -> None:
    from apps.core.settings import ObservabilitySettings

    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_logging(ObservabilitySettings.model_validate({}))
        configure_logging(ObservabilitySettings.model_validate({"log_format": "text"}))
        ours = [h for h in root.handlers if h not in before]
        assert len(ours) == 1 and isinstance(ours[0].formatter, TextFormatter)
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)


def test_uvicorn_log_config_writes_masked_json(tmp_path: Path) -> None:
    code = (
        "import logging, logging.config\n"
        "from apps.core.logging_setup import uvicorn_log_config\n"
        "from apps.core.settings import ObservabilitySettings\n"
        "logging.config.dictConfig(uvicorn_log_config(ObservabilitySettings.model_validate({})))\n"
        "logging.getLogger('uvicorn.error').info('started for ann@example.org')\n"
        "logging.getLogger('kgnlp.api').warning('order #123456')\n"
        "logging.getLogger('faiss.loader').info('Could not load library with AVX512 support')\n"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stderr
    lines = [json.loads(x) for x in err.splitlines()]
    assert [x["message"] for x in lines] == ["started for [EMAIL]", "order [ORDER_ID]"]


def test_request_log_lines_are_json_with_request_id_and_masked(service: Any, caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("kgnlp.access")
    access.addHandler(handler)
    caplog.set_level(logging.INFO, logger="kgnlp.access")
    try:
        r = httpx.get(f"{service.url}/customers/jane.doe@example.com/orders/ORD-12345",
                      headers={"X-Request-ID": "rid-pii-1"})  # fmt: skip
        assert r.status_code == 404
        httpx.get(f"{service.url}/kg/entities/bob@example.com", params={"graph": "finance"})
        # the access line is written after the response is sent: wait for it
        deadline = time.time() + 5
        while stream.getvalue().count("\n") < 2 and time.time() < deadline:
            time.sleep(0.02)
    finally:
        access.removeHandler(handler)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    mine = [x for x in lines if x["request_id"] == "rid-pii-1"]
    assert len(mine) == 1, lines
    assert mine[0]["message"].startswith("GET /customers/[EMAIL]/orders/[ORDER_ID] 404 ")
    assert mine[0]["http"]["status"] == 404 and mine[0]["http"]["route"] == "/customers/[EMAIL]/orders/[ORDER_ID]"
    assert "jane.doe" not in stream.getvalue() and "ORD-12345" not in stream.getvalue()
    routed = [x for x in lines if x["http"]["route"] == "/kg/entities/{entity_id}"]
    assert routed and "bob@example.com" not in stream.getvalue()  # templates, not raw paths
    assert all(x["request_id"] for x in lines)
    assert any(rec.name == "kgnlp.access" for rec in caplog.records)


# -- metrics -----------------------------------------------------------------------------------


def _series(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_after_traffic_on_the_real_service(service: Any) -> None:
    url = service.url
    httpx.get(f"{url}/v1/models")
    httpx.get(f"{url}/kg/entities/company:AMD", params={"graph": "finance"})
    httpx.get(f"{url}/kg/entities/company:NVDA", params={"graph": "finance"})
    httpx.get(f"{url}/no/such/path/123")
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    chat = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    assert chat.status_code == 200, chat.text
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    s = _series(r.text)
    assert s['kgnlp_http_requests_total{method="GET",route="/kg/entities/{entity_id}",status="200"}'] >= 2
    assert s['kgnlp_http_requests_total{method="GET",route="unmatched",status="404"}'] >= 1
    assert s['kgnlp_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}'] >= 1
    assert s['kgnlp_http_request_duration_seconds_count{method="GET",route="/v1/models"}'] >= 1
    assert 'kgnlp_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/models"}' in s
    assert "company:AMD" not in r.text and "/no/such" not in r.text  # no raw paths as labels
    assert s["kgnlp_generated_tokens_total"] >= 1
    assert s["kgnlp_generation_queue_depth"] == 0
    assert s['kgnlp_component_ready{component="generator",status="ready"}'] == 1
    assert s['kgnlp_component_ready{component="graphs",status="ready"}'] == 1
    assert 'kgnlp_adapter_loaded{adapter="alpha"}' in s
    assert "kgnlp_http_requests_in_flight" in s and "process_resident_memory_bytes" in s


def test_metrics_read_fake_services() -> None:
    generator = SimpleNamespace(adapter_names=lambda: ["a", "b"], adapters=SimpleNamespace(loaded=lambda: ["b"]))
    services = SimpleNamespace(
        components={"generator": Component("generator", "ready"), "embedder": Component("embedder", "failed")},
        generation=SimpleNamespace(depth=3, waiting=2, running=1, completed_tokens=99),
        generator=generator,
    )
    s = _series(Metrics(lambda: services).render()[0].decode())
    assert s["kgnlp_generation_queue_depth"] == 3 and s["kgnlp_generation_waiting"] == 2
    assert s["kgnlp_generated_tokens_total"] == 99
    assert s['kgnlp_adapter_loaded{adapter="a"}'] == 0 and s['kgnlp_adapter_loaded{adapter="b"}'] == 1
    assert s['kgnlp_component_ready{component="embedder",status="failed"}'] == 0
    before_start = Metrics(lambda: None).render()[0].decode()  # before the lifespan built services
    assert "kgnlp_http_requests_in_flight" in before_start and "kgnlp_generation" not in before_start
