"""One real service (real models, a small real graph, a test adapter) shared by the API tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.models.test_adapters import _make_adapter


@dataclass
class Service:
    url: str
    app: Any

    @property
    def services(self) -> Any:
        return self.app.state.services


@pytest.fixture(scope="session")
def service(model_home: Path, generator_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from apps.main import create_app
    from apps.settings import load_settings
    from kg.demo import build_demo
    from kg.registry import GraphRegistry
    from tests.conftest import LiveServer

    graphs = tmp_path_factory.mktemp("graphs")
    with GraphRegistry(graphs) as registry:
        build_demo("finance", registry.get("finance", create=True))
    adapters = tmp_path_factory.mktemp("adapters")
    _make_adapter(generator_path, adapters / "alpha", seed=1)
    _ensure_customer_service(model_home)
    state = tmp_path_factory.mktemp("state") / "state.sqlite"
    settings = load_settings(
        home=model_home,
        graph={"path": graphs},
        models={"adapter_dir": adapters, "max_waiting": 4},
        database_url=f"sqlite:///{state}",
    )
    app = create_app(settings)  # the lifespan loads the real default models
    with LiveServer(app) as live:
        yield Service(live.url, app)


def _ensure_customer_service(home: Path) -> None:
    """The retail corpus and intent classifier (``make test`` builds them; idempotent and fast then)."""
    from apps.customer_service.setup import train_intents
    from models.loading import load_sentence_embedder
    from retrieval.corpus import build_corpus

    embedder = load_sentence_embedder(home / "models" / "all-minilm-l6-v2")
    build_corpus("retail", home, embedder)
    train_intents(home, embedder)
