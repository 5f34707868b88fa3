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
    from apps.core.settings import load_settings
    from apps.main import create_app
    from kg.demo import build_demo
    from kg.registry import GraphRegistry
    from tests.conftest import LiveServer

    graphs = tmp_path_factory.mktemp("graphs")
    with GraphRegistry(graphs) as registry:  # the real demo graphs: CS retrieval runs hybrid+graph
        build_demo("finance", registry.get("finance", create=True))
        build_demo("retail", registry.get("retail", create=True))
    adapters = tmp_path_factory.mktemp("adapters")
    _make_adapter(generator_path, adapters / "alpha", seed=1)
    _install_shipped_adapter(adapters)
    _ensure_customer_service(model_home)
    _ensure_sentiment(model_home)
    state = tmp_path_factory.mktemp("state") / "state.sqlite"
    settings = load_settings(
        home=model_home,
        graph={"path": graphs},
        models={"adapter_dir": adapters, "max_waiting": 4},
        auth={"keys_path": state.parent / "keys.sqlite"},  # keys made by tests stay out of the real home
        database_url=f"sqlite:///{state}",
    )
    app = create_app(settings)  # the lifespan loads the real default models
    with LiveServer(app) as live:
        yield Service(live.url, app)


def _install_shipped_adapter(adapters: Path) -> None:
    """The ``customer_service`` adapter the repository ships, as ``make serve`` installs it."""
    import shutil

    from apps.customer_service.adapter import SHIPPED

    assert (SHIPPED / "adapter_model.safetensors").is_file(), f"the repository ships an adapter at {SHIPPED}"
    shutil.copytree(SHIPPED, adapters / "customer_service")


def _ensure_customer_service(home: Path) -> None:
    """The retail corpus and intent classifier (``make test`` builds them; idempotent and fast then)."""
    from apps.customer_service.setup import train_intents
    from models.loading import load_sentence_embedder
    from retrieval.corpus import build_corpus

    embedder = load_sentence_embedder(home / "models" / "all-minilm-l6-v2")
    build_corpus("retail", home, embedder)
    train_intents(home, embedder)


def _ensure_sentiment(home: Path) -> None:
    """A registered sentiment model (``make test`` runs ``kgnlp sentiment setup``; instant then)."""
    from apps.sentiment.training import ensure_default_model

    ensure_default_model(home, home / "models" / "all-minilm-l6-v2")


@pytest.fixture(scope="session")
def nogen_service(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service without the generator (generation routes answer 503 at once), with its own
    home: models and trained apps linked from the real one, indexes copied (admin routes write
    them), state, keys, graphs and adapters fresh. For fuzzing and hostile-input tests that write."""
    import shutil

    from apps.core.settings import load_settings
    from apps.main import create_app
    from kg.demo import build_demo
    from kg.registry import GraphRegistry
    from tests.conftest import LiveServer

    root = tmp_path_factory.mktemp("nogen")
    with GraphRegistry(root / "graphs") as registry:
        build_demo("finance", registry.get("finance", create=True))
    (root / "adapters").mkdir()
    _ensure_customer_service(model_home)
    _ensure_sentiment(model_home)
    home = root / "home"
    home.mkdir()
    for entry in model_home.iterdir():
        if entry.name == "indexes":
            shutil.copytree(entry, home / entry.name)
        elif entry.is_dir():
            (home / entry.name).symlink_to(entry, target_is_directory=True)
    settings = load_settings(
        home=home,
        graph={"path": root / "graphs"},
        models={"load_generator": False, "adapter_dir": root / "adapters"},
        auth={"keys_path": root / "keys.sqlite"},
        database_url=f"sqlite:///{root / 'state.sqlite'}",
    )
    app = create_app(settings)
    with LiveServer(app) as live:
        yield Service(live.url, app)
