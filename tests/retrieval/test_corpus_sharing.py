"""Corpora shared by several processes: versions, the cross-process update lock, torn-read
protection, and the corpus's graph kept in step with deleted and replaced documents."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from kg.registry import GraphRegistry
from kg.store import Entity, Relation
from kgnlp.errors import ConflictError
from retrieval.corpus import Corpus, build_corpus, corpus_dir, corpus_revision, update_corpus
from retrieval.types import Document

DOCS = [
    {"id": "d1", "text": "Acme Bank opens its branches at nine in the morning."},
    {"id": "d2", "text": "Refunds from Acme Bank reach the original card within five days."},
]


@pytest.fixture(scope="module")
def embedder(embedder_path: Path):  # type: ignore[no-untyped-def]
    from models.loading import load_sentence_embedder

    return load_sentence_embedder(embedder_path)


def _home(tmp_path: Path, embedder: object, *, graph: bool) -> tuple[Path, GraphRegistry]:
    home = tmp_path / "home"
    src = tmp_path / "src"
    src.mkdir()
    (src / "documents.jsonl").write_text("\n".join(json.dumps(d) for d in DOCS) + "\n")
    graphs = GraphRegistry(home / "graphs")
    if graph:  # a graph of the corpus's name: passages get linked to its entities
        graphs.get("docs", create=True).upsert(
            [Entity("org:acme", "Company", "Acme Bank"), Entity("d1", "Document", "opening hours")],
            [Relation("org:acme", "PUBLISHES", "d1")],
        )
    build_corpus("docs", home, embedder, source=src, graphs=graphs)
    return home, graphs


def test_every_save_is_a_new_revision(tmp_path: Path, embedder: object) -> None:
    home, graphs = _home(tmp_path, embedder, graph=False)
    first = corpus_revision(home, "docs")
    assert first is not None and corpus_revision(home, "nothing-here") is None
    update_corpus("docs", home, embedder, add=[Document("d3", "Gift cards never expire.")], graphs=graphs)
    second = corpus_revision(home, "docs")
    assert second not in (None, first)
    assert Corpus.load(corpus_dir(home, "docs")).manifest["revision"] == second
    graphs.close()


def test_a_load_that_straddles_a_swap_reads_the_new_version_whole(
    tmp_path: Path, embedder: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, graphs = _home(tmp_path, embedder, graph=False)
    path = corpus_dir(home, "docs")
    real = Corpus._load_files.__func__  # type: ignore[attr-defined]
    calls: list[int] = []

    def swap_midway(cls: type[Corpus], p: Path) -> Corpus:
        calls.append(1)
        loaded = real(cls, p)
        if len(calls) == 1:  # another process saves a new version while this one reads
            update_corpus("docs", home, embedder, add=[Document("d3", "Gift cards never expire.")])
        return loaded

    monkeypatch.setattr(Corpus, "_load_files", classmethod(swap_midway))
    corpus = Corpus.load(path)
    assert len(calls) == 3  # the straddling read (thrown away), the update's own read, the reread
    assert {p.doc_id for p in corpus.passages.values()} == {"d1", "d2", "d3"}
    graphs.close()


def _add_one(home: str, embedder_path: str, doc_id: str, barrier: object) -> None:
    from models.loading import load_sentence_embedder

    emb = load_sentence_embedder(Path(embedder_path))
    barrier.wait()  # type: ignore[attr-defined]
    update_corpus("docs", Path(home), emb, add=[Document(doc_id, f"Document {doc_id} about parking.")])


def test_two_processes_updating_at_once_lose_nothing(tmp_path: Path, embedder: object, embedder_path: Path) -> None:
    home, graphs = _home(tmp_path, embedder, graph=False)
    graphs.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_add_one, args=(str(home), str(embedder_path), d, barrier)) for d in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    corpus = Corpus.load(corpus_dir(home, "docs"))
    assert {p.doc_id for p in corpus.passages.values()} == {"d1", "d2", "p1", "p2"}
    assert corpus.manifest["version"] == 3  # the build, then one save per process


def test_deleted_and_replaced_documents_leave_the_graph(tmp_path: Path, embedder: object) -> None:
    home, graphs = _home(tmp_path, embedder, graph=True)
    store = graphs.get("docs")
    d2 = store.get("d2")  # the build added the passage as a Passage entity that mentions Acme
    assert d2.type == "Passage" and "five days" in d2.description
    assert any(r.type == "MENTIONS" for r in store.neighbors("d1", direction="out").relations)

    replaced = update_corpus(
        "docs", home, embedder, add=[Document("d2", "Acme Bank refunds now take ten days.")], graphs=graphs
    )
    assert replaced["unlinked_passages"] == 1 and replaced["mentions"] >= 1
    assert "ten days" in store.get("d2").description  # no trace of the old text

    gone = update_corpus("docs", home, embedder, delete=["d2", "d1"], graphs=graphs)
    assert gone["deleted_passages"] == 2 and gone["unlinked_passages"] == 2
    assert "d2" not in store.get_many(["d2"])  # the Passage entity (and its text) is gone
    d1 = store.get("d1")  # the graph's own Document entity stays, without the corpus's MENTIONS edges
    rels = store.neighbors("d1", direction="both").relations
    assert d1.type == "Document" and {r.type for r in rels} == {"PUBLISHES"}
    graphs.close()


def test_a_read_only_graph_refuses_the_update_before_changing_anything(tmp_path: Path, embedder: object) -> None:
    home, graphs = _home(tmp_path, embedder, graph=True)
    graphs.close()
    before = corpus_revision(home, "docs")
    with (
        GraphRegistry(home / "graphs", read_only=True) as readers,
        pytest.raises(ConflictError, match=r"read-only.*Neo4j"),
    ):
        update_corpus("docs", home, embedder, add=[Document("d9", "Acme Bank news.")], graphs=readers)
    assert corpus_revision(home, "docs") == before
