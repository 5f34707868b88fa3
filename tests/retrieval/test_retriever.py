"""End-to-end retrieval over a small real corpus (Bitext answers, real MiniLM, real graph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kgnlp.errors import NotFoundError, ValidationError
from retrieval.corpus import Corpus, build_corpus, corpus_dir, load_retriever
from retrieval.retriever import Retriever, RetrieverConfig
from retrieval.types import Document

QUERIES = {
    "I want to cancel the order I placed yesterday": "cancel_order",
    "where is my package right now, can I track it?": "track_order",
    "how can I get my money back": "get_refund",
    "I need to change the delivery address for my purchase": "change_shipping_address",
}


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid", "graph", "hybrid+graph"])
def test_modes_find_the_right_intent(retail_retriever: Retriever, mode: str) -> None:
    hits = 0
    for q, intent in QUERIES.items():
        ev = retail_retriever.retrieve(q, k=3, mode=mode)  # type: ignore[arg-type]
        passages = [e for e in ev if e.kind == "passage"]
        assert passages, (mode, q)
        hits += passages[0].metadata["intent"] == intent
        assert [e.citation for e in ev] == list(range(1, len(ev) + 1))
    assert hits >= (3 if mode == "lexical" else 4)


def test_evidence_shape_dedupe_budget_and_facts(retail_retriever: Retriever) -> None:
    ev = retail_retriever.retrieve("cancel my order please", k=5, mode="hybrid+graph")
    passages = [e for e in ev if e.kind == "passage"]
    facts = [e for e in ev if e.kind == "fact"]
    assert len(passages) == 5 and len({e.source_id for e in passages}) == 5
    assert {"intent", "category", "doc_id"} <= set(passages[0].metadata)
    assert passages[0].metadata["category"] == "ORDER"
    assert facts and all(f.metadata.get("source") for f in facts)
    assert any("cancel order" in f.text for f in facts)
    small = Retriever(
        retail_retriever.passages,
        retail_retriever.embedder,
        retail_retriever.dense,
        retail_retriever.lexical,
        config=RetrieverConfig(token_budget=40),
    )
    ev = small.retrieve("cancel my order please", k=5, mode="hybrid")
    assert len(ev) == 1 and ev[0].text.endswith("…")
    with pytest.raises(ValidationError):
        retail_retriever.retrieve("   ", k=3)
    with pytest.raises(ValidationError):
        small.retrieve("x", mode="graph")


def test_weighted_fusion_config(retail_retriever: Retriever) -> None:
    r = Retriever(
        retail_retriever.passages,
        retail_retriever.embedder,
        retail_retriever.dense,
        retail_retriever.lexical,
        config=RetrieverConfig(fusion="weighted", weights={"dense": 1.0, "lexical": 0.0}),
    )
    a = [e.source_id for e in r.retrieve("track my parcel", k=4, mode="hybrid")]
    b = [e.source_id for e in retail_retriever.retrieve("track my parcel", k=4, mode="dense")]
    assert a == b  # lexical weight 0: the dense order survives fusion


def test_corpus_build_is_idempotent_and_linked(retail_home: Path, small_bitext: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    rep = build_corpus("retail", retail_home, embedder, small_bitext)
    assert rep["status"] == "unchanged" and rep["passages"] == 36
    manifest = json.loads((corpus_dir(retail_home, "retail") / "manifest.json").read_text())
    assert manifest["model"] == "all-minilm-l6-v2" and manifest["dim"] == 384 and manifest["index"] == "flat"
    from kg.registry import GraphRegistry

    with GraphRegistry(retail_home / "graphs") as reg:
        store = reg.get("retail")
        mentions = [r for r in store.iter_relations() if r.type == "MENTIONS"]
        assert len(mentions) == manifest["mentions"] > 0
        assert all(r.head.startswith("cs:faq:") for r in mentions)


def test_incremental_add_delete_keeps_ids(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    docs = [
        Document(f"d{i}", t, metadata={"n": i})
        for i, t in enumerate(
            [
                "Returns are accepted within 30 days.",
                "Shipping takes 3 to 5 business days.",
                "You can pay by card or bank transfer.",
            ]
        )
    ]
    c = Corpus.build("toy", docs, embedder)
    c.save(tmp_path / "toy")
    keys_before = {p.id: p.key for p in c.passages.values()}
    c.add_documents([Document("d3", "Gift cards never expire.")], embedder)
    c.delete_documents(["d0"])
    c.save(tmp_path / "toy")
    back = Corpus.load(tmp_path / "toy")
    assert {p.id: p.key for p in back.passages.values()} == {"d1": keys_before["d1"], "d2": keys_before["d2"], "d3": 3}
    r = back.retriever(embedder)
    assert r.retrieve("do gift cards expire", k=1, mode="dense")[0].source_id == "d3"
    assert r.retrieve("return policy", k=3, mode="hybrid")[0].source_id != "d0"
    np.testing.assert_array_equal(back.dense.keys(), [1, 2, 3])


def test_load_missing_corpus_says_how_to_build(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFoundError, match="kgnlp index build --corpus nope"):
        load_retriever("nope", tmp_path, embedder)
    with pytest.raises(ValidationError):
        corpus_dir(tmp_path, "../etc")


def test_warm_prepares_the_intent_linker_and_survives_its_failure(
    retail_retriever: Retriever, caplog: pytest.LogCaptureFixture
) -> None:
    class _Voter:
        def __init__(self, error: Exception | None) -> None:
            self.error, self.prepared = error, False

        def prepare(self) -> None:
            if self.error is not None:
                raise self.error
            self.prepared = True

    def with_voter(voter: _Voter) -> Retriever:
        graph = type("G", (), {"example_voter": voter})()
        r = retail_retriever
        return Retriever(r.passages, r.embedder, r.dense, r.lexical, graph=graph)  # type: ignore[arg-type]

    ok = _Voter(None)
    assert with_voter(ok).warm() and ok.prepared
    assert not with_voter(_Voter(RuntimeError("no memory"))).warm()  # logged, not raised
    assert "no memory" in caplog.text
    assert retail_retriever.warm()  # the real graph's linker
