"""Propagation of run-time changes between processes sharing one ``KGNLP_HOME`` (two ``Services``
here stand for two workers; tests/apps/test_replicas.py does it with real processes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from apps.core.propagation import Propagation, adapter_signature


class RecordingAdapters:
    """The adapter-set surface Propagation drives (``load``/``forget``/``available``), recording calls;
    a folder whose config says ``"broken": true`` fails to load, like a bad adapter would."""

    def __init__(self) -> None:
        self.paths: dict[str, Path] = {}
        self.calls: list[tuple[str, str]] = []

    def available(self) -> list[str]:
        return sorted(self.paths)

    def load(self, name: str, path: Path) -> None:
        self.calls.append(("load", name))
        if json.loads((path / "adapter_config.json").read_text()).get("broken"):
            raise ValueError("broken adapter")
        self.paths[name] = path

    def register(self, name: str, path: Path) -> None:
        self.paths[name] = path

    def forget(self, name: str) -> None:
        self.calls.append(("forget", name))
        self.paths.pop(name, None)


def _adapter(folder: Path, **config: Any) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, **config}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def _process(home: Path) -> Any:
    from apps.core.settings import load_settings

    settings = SimpleNamespace(home=home, retrieval=load_settings(home=home).retrieval)
    generator = SimpleNamespace(adapters=RecordingAdapters())
    services = SimpleNamespace(settings=settings, retrievers={}, generator=generator, customer_service=None,
                               embedder=None, graphs=None)  # fmt: skip
    return services, Propagation(services, home / "adapters", interval_s=0.1)


def test_an_adapter_published_by_one_process_is_loaded_by_another_once(tmp_path: Path) -> None:
    (_, a), (b_services, b) = _process(tmp_path), _process(tmp_path)
    src = _adapter(tmp_path / "incoming" / "v1")
    published = a.publish_adapter("support", src)
    assert adapter_signature(published) is not None and published == tmp_path / "adapters" / "support"
    assert a.sync_adapters() == []  # the publisher does not reload its own change
    assert b.sync_adapters() == ["support"] and b.sync_adapters() == []
    assert b_services.generator.adapters.paths["support"] == published

    # a new version replaces the folder in one swap: noticed and loaded again
    shutil.rmtree(src)
    a.publish_adapter("support", _adapter(src, r=16))
    assert b.sync_adapters() == ["support"]

    # withdrawn by one process: forgotten by the other
    a.withdraw_adapter("support")
    assert not published.exists()
    assert b.sync_adapters() == ["support"] and "support" not in b_services.generator.adapters.available()


def test_a_broken_version_is_tried_once_and_the_old_one_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (_, a), (b_services, b) = _process(tmp_path), _process(tmp_path)
    a.publish_adapter("support", _adapter(tmp_path / "good"))
    b.sync_adapters()
    a.publish_adapter("support", _adapter(tmp_path / "bad", broken=True))
    assert b.sync_adapters() == [] and b.sync_adapters() == []
    loads = [c for c in b_services.generator.adapters.calls if c == ("load", "support")]
    assert len(loads) == 2  # the good one, then the broken one once: not retried every poll
    assert b_services.generator.adapters.paths["support"] == tmp_path / "adapters" / "support"
    assert "could not be loaded here" in caplog.text


def test_a_corpus_saved_by_another_process_is_swapped_in(tmp_path: Path, embedder_path: Path) -> None:
    from models.loading import load_sentence_embedder
    from retrieval.corpus import build_corpus, load_retriever, update_corpus
    from retrieval.types import Document

    src = tmp_path / "src"
    src.mkdir()
    (src / "documents.jsonl").write_text(json.dumps({"id": "d1", "text": "The shop opens at nine."}) + "\n")
    embedder = load_sentence_embedder(embedder_path)
    build_corpus("docs", tmp_path, embedder, source=src)
    services, _ = _process(tmp_path)
    services.embedder = embedder
    services.retrievers["docs"] = load_retriever("docs", tmp_path, embedder)
    prop = Propagation(services, None)
    old = services.retrievers["docs"]
    prop.check()
    assert services.retrievers["docs"] is old  # nothing changed: nothing reloaded

    # another process adds a document
    update_corpus("docs", tmp_path, embedder, add=[Document("d2", "Parcels are collected at noon.")])
    prop.check()
    assert services.retrievers["docs"] is not old
    assert services.retrievers["docs"].retrieve("when are parcels collected", 1, "hybrid")[0].source_id == "d2"
