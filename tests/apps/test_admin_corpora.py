"""``/admin/corpora``: incremental add/replace/delete of documents over real HTTP, with real FAISS + BM25."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

DOCS = [
    {"id": "d1", "text": "Our store opens at nine in the morning and closes at six in the evening."},
    {"id": "d2", "text": "Refunds are paid back to the original card within five working days."},
    {"id": "d3", "text": "Standard shipping takes three to five days; express shipping arrives next day."},
]


@pytest.fixture(scope="module")
def live(embedder_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from apps.core.services import Services
    from apps.core.settings import load_settings
    from apps.main import create_app
    from kg.registry import GraphRegistry
    from models.loading import load_sentence_embedder
    from retrieval.corpus import build_corpus, load_retriever
    from tests.conftest import LiveServer

    home = tmp_path_factory.mktemp("home")
    src = tmp_path_factory.mktemp("src")
    (src / "documents.jsonl").write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    embedder = load_sentence_embedder(embedder_path)
    build_corpus("docs", home, embedder, source=src)
    settings = load_settings(home=home, retrieval={"corpora": ["docs"]},
                             models={"load_generator": False}, customer_service={"enabled": False})  # fmt: skip
    graphs = GraphRegistry(home / "graphs")
    services = Services(settings=settings, embedder=embedder, graphs=graphs,
                        retrievers={"docs": load_retriever("docs", home, embedder, graphs)})  # fmt: skip
    with LiveServer(create_app(settings, services)) as server:
        yield server.url, home
    graphs.close()


def top(url: str, query: str) -> dict:
    r = httpx.post(f"{url}/retrieve", json={"query": query, "k": 1, "mode": "hybrid", "corpus": "docs"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["evidence"][0]


def test_add_replace_delete_take_effect_at_once_and_persist(live: tuple[str, Path]) -> None:
    url, home = live
    assert top(url, "how long does a refund take")["source_id"].startswith("d2")
    new = {"documents": [{"id": "d4", "text": "Gift cards never expire and can be used online or in any store.",
                          "metadata": {"category": "GIFT"}}]}  # fmt: skip
    r = httpx.post(f"{url}/admin/corpora/docs/documents", json=new, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["added_passages"] == 1 and r.json()["documents"] == 4
    hit = top(url, "do gift cards expire")
    assert hit["source_id"].startswith("d4") and hit["metadata"]["category"] == "GIFT"

    replace = {"documents": [{"id": "d2", "text": "Refunds now take up to ten working days to reach your bank."}]}
    r = httpx.post(f"{url}/admin/corpora/docs/documents", json=replace, timeout=60)
    assert r.json()["deleted_passages"] == 0 and r.json()["documents"] == 4  # replaced, not duplicated
    assert "ten working days" in top(url, "how long does a refund take")["text"]

    r = httpx.delete(f"{url}/admin/corpora/docs/documents/d4", timeout=60)
    assert r.status_code == 200 and r.json()["deleted_passages"] == 1 and r.json()["documents"] == 3
    assert not top(url, "do gift cards expire")["source_id"].startswith("d4")

    from retrieval.corpus import Corpus, corpus_dir

    on_disk = Corpus.load(corpus_dir(home, "docs"))  # what a restart would load
    assert sorted({p.doc_id for p in on_disk.passages.values()}) == ["d1", "d2", "d3"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("POST", "/admin/corpora/nope/documents", {"documents": [{"id": "x", "text": "t"}]}, 404, "nope"),
        ("POST", "/admin/corpora/docs/documents", {"documents": []}, 422, "documents"),
        ("POST", "/admin/corpora/docs/documents", {"documents": [{"id": "bad id", "text": "t"}]}, 422, "id"),
        ("POST", "/admin/corpora/docs/documents", {"documents": [{"id": "x", "text": ""}]}, 422, "text"),
        ("DELETE", "/admin/corpora/docs/documents/missing", None, 404, "missing"),
    ],
)
def test_bad_requests(
    live: tuple[str, Path], method: str, path: str, body: dict | None, status: int, fragment: str
) -> None:
    url, _ = live
    r = httpx.request(method, f"{url}{path}", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]
