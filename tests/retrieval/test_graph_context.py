"""Graph context: seeds from the linker and from embeddings, facts rendered with provenance."""

from __future__ import annotations

from pathlib import Path

from kg.registry import GraphRegistry
from kg.store import Entity, Relation
from retrieval.graph_context import GraphContext, render_fact


def test_render_fact() -> None:
    assert render_fact("cancel order", "IN_CATEGORY", "order") == "cancel order — in category → order."


def test_facts_from_a_real_store(tmp_path: Path) -> None:
    from kg.ladybug_store import LadybugStore
    from kg.linking import Linker

    store = LadybugStore.open(tmp_path / "g")
    try:
        store.upsert(
            [
                Entity("i:cancel", "Intent", "cancel order", source="src-a"),
                Entity("c:order", "SupportCategory", "order", source="src-a"),
                Entity("s:oid", "SlotType", "order id", source="src-a"),
                Entity("doc:1", "Document", "", description="To cancel, open Orders.", source="src-a"),
            ],
            [
                Relation("i:cancel", "IN_CATEGORY", "c:order", source="src-a"),
                Relation("i:cancel", "USES_SLOT", "s:oid", source="src-b"),
                Relation("doc:1", "ANSWERS", "i:cancel", source="src-a"),
            ],
        )
        ctx = GraphContext(store, Linker(store.iter_entities()), graph="t")
        hits = ctx.collect("How do I cancel order 12?")
        assert [s.entity_id for s in hits.seeds] == ["i:cancel"]
        assert hits.documents == [("doc:1", 1.0)]
        facts = {f.text: f for f in hits.facts}
        assert set(facts) == {"cancel order — in category → order.", "cancel order — uses slot → order id."}
        f = facts["cancel order — uses slot → order id."]
        assert f.kind == "fact" and f.source_id == "i:cancel|USES_SLOT|s:oid"
        assert f.metadata["source"] == "src-b" and f.metadata["graph"] == "t"
        assert ctx.collect("nothing relevant here").facts == []
    finally:
        store.close()


def test_embedding_seeds_find_paraphrased_intents(retail_home: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from retrieval.corpus import graph_context_for

    with GraphRegistry(retail_home / "graphs") as reg:
        ctx = graph_context_for("retail", reg.get("retail"), reg.linker("retail"), embedder)
        seeds = ctx.seeds("i forgot the password of my account and cannot sign in")
        assert seeds and seeds[0].entity_id == "cs:intent:recover_password"
        hits = ctx.collect("i forgot the password of my account and cannot sign in")
        assert hits.documents and all(d.startswith("cs:faq:recover_password:") for d, _ in hits.documents[:6])
