"""Smaller hardening of issue #19 item 14: tensor files, the timeline PNG, ``cs setup``'s meta.json,
webhook logging, and strict JSON content types."""

from __future__ import annotations

import json
import logging
import os
import resource
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from kgnlp.errors import StoreError
from tests.conftest import LiveServer, free_port

ROOT = Path(__file__).resolve().parents[2]


# -- torch.load: plain tensor files only ---------------------------------------------------------


class _Evil:
    """Pickles to ``os.mkdir(marker)``: what a crafted checkpoint runs under ``weights_only=False``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


def _evil_bytes(marker: Path, wrap: bool = True) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"kind": "complex", "model_args": _Evil(marker), "state": {}} if wrap else _Evil(marker), buf)
    return buf.getvalue()


def test_load_tensors_refuses_pickled_code(tmp_path: Path) -> None:
    import torch

    from kgnlp.files import load_tensors

    marker = tmp_path / "pwned"
    (tmp_path / "evil.pt").write_bytes(_evil_bytes(marker, wrap=False))
    with pytest.raises(StoreError, match="not a plain tensor file"):
        load_tensors(tmp_path / "evil.pt")
    with pytest.raises(StoreError):
        load_tensors(_evil_bytes(marker))
    assert not marker.exists()
    torch.save({"w": torch.ones(2), "meta": {"epoch": 3, "name": "x", "hist": [1.0, None]}}, tmp_path / "ok.pt")
    ok = load_tensors(tmp_path / "ok.pt")
    assert torch.equal(ok["w"], torch.ones(2)) and ok["meta"] == {"epoch": 3, "name": "x", "hist": [1.0, None]}


def test_embedding_artifact_refuses_a_pickled_model_blob(tmp_path: Path) -> None:
    from kg.embeddings.artifacts import EmbeddingArtifact

    marker = tmp_path / "pwned"
    art = EmbeddingArtifact(np.zeros((2, 4), dtype=np.float32), ["a", "b"], ["r"], {"model": "complex"},
                            _evil_bytes(marker))  # fmt: skip
    with pytest.raises(StoreError):
        art.load_model()
    assert not marker.exists()


def test_training_resume_refuses_a_pickled_checkpoint(tmp_path: Path) -> None:
    from kg.embeddings.models import build_model
    from kg.embeddings.training import TrainConfig, train
    from tests.kg.test_embeddings import FAST, ring_data

    data = ring_data()
    marker = tmp_path / "pwned"
    (tmp_path / "last.pt").write_bytes(_evil_bytes(marker))
    m = build_model("complex", data.num_entities, data.num_relations, 16, init_scale=0.1)
    with pytest.raises(StoreError):
        train(m, data, TrainConfig(**FAST), checkpoint_dir=tmp_path, resume=True, progress=False)
    assert not marker.exists()


def _tiny_classifier_config() -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=32, num_labels=3)  # fmt: skip


def test_int8_classifier_refuses_a_pickled_state_file(tmp_path: Path) -> None:
    from models.quantize import load_int8_classifier

    _tiny_classifier_config().save_pretrained(str(tmp_path))
    marker = tmp_path / "pwned"
    (tmp_path / "int8_state.pt").write_bytes(_evil_bytes(marker, wrap=False))
    with pytest.raises(StoreError):
        load_int8_classifier(tmp_path)
    assert not marker.exists()


def test_int8_state_dict_loads_as_plain_tensors(tmp_path: Path) -> None:
    """Quantized packed parameters pass ``weights_only=True``: the safe load is no regression."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from kgnlp.files import load_tensors
    from models.classify import quantize_classifier

    config = _tiny_classifier_config()
    q = quantize_classifier(AutoModelForSequenceClassification.from_config(config))
    torch.save(q.state_dict(), tmp_path / "int8_state.pt")
    fresh = quantize_classifier(AutoModelForSequenceClassification.from_config(config))
    fresh.load_state_dict(load_tensors(tmp_path / "int8_state.pt"))
    x = torch.tensor([[1, 5, 7, 2]])
    assert torch.allclose(fresh(input_ids=x).logits, q(input_ids=x).logits)


# -- the timeline PNG ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentiment_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app and sentiment routes over a real SQLite store (no models: the chart needs none)."""
    from apps.core.services import build_services
    from apps.core.settings import load_settings
    from apps.main import create_app
    from apps.sentiment.companies import CompanyDirectory
    from apps.sentiment.service import SentimentService
    from apps.sentiment.store import SentimentStore

    home = tmp_path_factory.mktemp("chart")
    settings = load_settings(home=home, models={"load_generator": False, "load_embedder": False})
    services = build_services(settings)
    store = SentimentStore(f"sqlite:///{home / 'state.sqlite'}").open()
    services.sentiment = SentimentService(None, None, CompanyDirectory({}), None, store, SimpleNamespace(bucket_s=3600))
    with LiveServer(create_app(settings, services=services)) as live:
        yield live.url
    services.close()


def test_timeline_png_draws_dollar_signs_literally(sentiment_app: str) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    params = {"entity": "topic:$\\frac{$", "format": "png", "from": start.isoformat(),
              "to": (start + timedelta(days=2)).isoformat()}  # fmt: skip
    r = httpx.get(f"{sentiment_app}/sentiment/timeline", params=params, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_timeline_png_caps_the_bars_it_draws(sentiment_app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.axes import Axes

    drawn: list[int] = []
    bar = Axes.bar

    def spy(self: Any, x: Any, *a: Any, **k: Any) -> Any:
        drawn.append(len(x))
        return bar(self, x, *a, **k)

    monkeypatch.setattr(Axes, "bar", spy)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    params = {"entity": "topic:x", "format": "png", "bucket": "60", "from": start.isoformat(),
              "to": (start + timedelta(minutes=5000)).isoformat()}  # fmt: skip
    r = httpx.get(f"{sentiment_app}/sentiment/timeline", params=params, timeout=120)
    assert r.status_code == 200, r.text
    assert drawn and max(drawn) <= 240  # apps.sentiment.chart.MAX_BARS
    j = httpx.get(f"{sentiment_app}/sentiment/timeline", params={**params, "format": "json"}, timeout=60)
    assert len(j.json()["buckets"]) == 5000  # JSON keeps every bucket; only the picture is coarser


def test_chart_sums_buckets_into_wider_bars() -> None:
    from apps.sentiment.chart import _bars

    buckets = [SimpleNamespace(start=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=i), negative=1, neutral=2,
                               positive=i % 2) for i in range(10)]  # fmt: skip
    bars, k = _bars(buckets, 4)
    assert k == 3 and len(bars) == 4
    assert (bars[0].negative, bars[0].neutral, bars[0].positive) == (3, 6, 1) and bars[-1].negative == 1
    assert bars[0].start == buckets[0].start and bars[0].negative_share == pytest.approx(0.3)


# -- cs setup: meta.json ---------------------------------------------------------------------------


class _FakeEmbedder:
    """Deterministic 4-d vectors: enough for the logistic regression to train in milliseconds."""

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        rng = [np.random.default_rng(sum(map(ord, t))) for t in texts]
        v = np.stack([r.standard_normal(4) for r in rng]).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _bitext(path: Path, extra: str = "") -> Path:
    rows = ["instruction,intent"] + [f"text {i}{extra},intent_{i % 3}" for i in range(9)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cs_setup_failure_while_writing_keeps_the_previous_classifier_and_meta(tmp_path: Path) -> None:
    from apps.customer_service.setup import intents_dir, train_intents

    # a long source path makes meta.json (which records it) the biggest file written, so a small
    # file-size limit (a full disk, as the process sees it) strikes while meta.json is written
    deep = tmp_path.joinpath(*["d" * 120] * 12)
    deep.mkdir(parents=True)
    src = _bitext(deep / "bitext.csv")
    home = tmp_path / "home"
    first = train_intents(home, _FakeEmbedder(), source=src)
    assert first["status"] == "trained"
    out = intents_dir(home)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert json.loads(before["meta.json"])["source_sha256"] == first["source_sha256"]
    assert len(before["meta.json"]) > 1200 > max(len(v) for k, v in before.items() if k != "meta.json")

    _bitext(src, extra=" changed")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1200, hard))
    try:
        with pytest.raises(OSError):
            train_intents(home, _FakeEmbedder(), source=src)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # the old classifier and its meta.json, whole
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind
    again = train_intents(home, _FakeEmbedder(), source=src)
    assert again["status"] == "trained" and again["source_sha256"] != first["source_sha256"]


def test_cs_setup_retrains_over_an_unreadable_meta_json(tmp_path: Path) -> None:
    from apps.customer_service.setup import intents_dir, train_intents

    src = _bitext(tmp_path / "bitext.csv")
    home = tmp_path / "home"
    train_intents(home, _FakeEmbedder(), source=src)
    assert train_intents(home, _FakeEmbedder(), source=src)["status"] == "unchanged"
    (intents_dir(home) / "meta.json").write_text('{"source": "/x", "source_sha')  # what a torn write left
    assert train_intents(home, _FakeEmbedder(), source=src)["status"] == "trained"


# -- webhooks ------------------------------------------------------------------------------------


TOKEN = "T0AAA/B0BBB/XoXoSeCrEtToKeN"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from apps.sentiment.store import SentimentStore

    s = SentimentStore(f"sqlite:///{tmp_path / 'w.sqlite'}").open()
    yield s
    s.close()


def test_unsigned_webhooks_warn_once_naming_hosts_only(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    from apps.sentiment.webhooks import WebhookDispatcher

    url = f"https://hooks.example.com/services/{TOKEN}?k=1"
    with caplog.at_level(logging.WARNING, logger="kgnlp.sentiment.webhooks"):
        d = WebhookDispatcher(store, [url], None)
        d.start()
        d.start()
        d.close()
        WebhookDispatcher(store, [url], "s3cret").start().close()
    warnings = [r for r in caplog.records if "UNSIGNED" in r.getMessage()]
    assert len(warnings) == 1 and "https://hooks.example.com/…" in warnings[0].getMessage()
    assert "SeCrEtToKeN" not in caplog.text


def test_webhook_logs_never_hold_the_receiver_url(store: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Neither our dead-letter warning nor httpx's request line (INFO) names the URL's path or query."""
    from apps.sentiment.webhooks import WebhookDispatcher
    from tests.apps.sentiment.test_webhooks import SECRET, Receiver, alert

    rx = Receiver()
    live = rx.url.replace("/hook", f"/hook/{TOKEN}?token=XoXoSeCrEtToKeN")
    port = free_port()
    dead = f"http://127.0.0.1:{port}/hook/{TOKEN}"
    d = WebhookDispatcher(store, [live, dead], SECRET, max_attempts=1)
    try:
        with caplog.at_level(logging.INFO):
            d.enqueue(alert(), "alert.fired")
            assert d.deliver_due() == 2
    finally:
        d.close()
        rx.close()
    assert rx.received, "the live receiver got the alert"
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "SeCrEtToKeN" not in text and "XoXo" not in text
    assert f"http://127.0.0.1:{port}/…" in text  # the dead letter is still reported, by host
    httpx_lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert httpx_lines and all(rx.url.rsplit("/", 1)[0] + "/…" in line for line in httpx_lines), httpx_lines


def test_redact_url() -> None:
    from apps.sentiment.webhooks import redact_url

    assert redact_url("https://user:pw@hooks.example.com:8443/services/x?y=1") == "https://hooks.example.com:8443/…"
    assert redact_url("http://[::1]:9000/") == "http://[::1]:9000"
    assert redact_url("not a url") == "<invalid url>"


# -- strict JSON content type (CSRF by a simple cross-site request) ---------------------------------


def test_fastapi_floor_has_strict_json_content_types() -> None:
    import fastapi
    from packaging.requirements import Requirement
    from packaging.version import Version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    req = next(Requirement(d) for d in deps if Requirement(d).name == "fastapi")
    assert not req.specifier.contains("0.131.0"), "fastapi < 0.132 parses a JSON body sent without Content-Type"
    assert req.specifier.contains(fastapi.__version__) and Version(fastapi.__version__) >= Version("0.132")


def test_json_routes_refuse_bodies_without_a_json_content_type(tmp_path: Path) -> None:
    """A page on another site may POST text/plain (or typeless) bodies without a CORS preflight; with auth
    off (the loopback demo) such a body must not create an admin key."""
    from apps.core.services import build_services
    from apps.core.settings import load_settings
    from apps.main import create_app

    settings = load_settings(home=tmp_path, models={"load_generator": False, "load_embedder": False},
                             auth={"enabled": False})  # fmt: skip
    app = create_app(settings, services=build_services(settings))
    body = json.dumps({"name": "csrf", "scopes": ["admin"]})
    with LiveServer(app) as live:
        plain = httpx.post(f"{live.url}/admin/keys", content=body, headers={"Content-Type": "text/plain"})
        typeless = httpx.post(f"{live.url}/admin/keys", content=body)
        form = httpx.post(f"{live.url}/admin/keys", data={"name": "csrf", "scopes": ["admin"]})
        proper = httpx.post(f"{live.url}/admin/keys", json={"name": "ok", "scopes": ["read"]})
    assert "content-type" not in {k.lower() for k in typeless.request.headers}
    assert plain.status_code == typeless.status_code == form.status_code == 422, (plain.text, typeless.text)
    assert proper.status_code == 201
    assert [k.name for k in app.state.keys.list()] == ["ok"]
    app.state.keys.close()
