"""Graph context: seeds from the linker and from embeddings, facts rendered with provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

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


_AXES = {"refund": 0, "money": 0, "password": 1, "login": 1, "ship": 2}


class _ToyEmbedder:
    """Maps a few words to fixed axes: enough to make the nearest examples unambiguous."""

    dim = 3
    name = "toy"

    def embed(self, texts):  # type: ignore[no-untyped-def]
        import numpy as np

        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                if w in _AXES:
                    out[i, _AXES[w]] += 1.0
            out[i] += 0.01  # no zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_example_voter_votes_by_nearest_examples() -> None:
    import pytest

    from kgnlp.errors import ConfigurationError
    from retrieval.graph_context import ExampleVoter

    examples = [
        ("i:refund", "refund please"),
        ("i:refund", "money back refund"),
        ("i:refund", "refund please"),  # repeated pair: counted once
        ("i:login", "password reset"),
        ("i:login", "cannot login"),
        ("i:ship", ""),  # blank: skipped
    ]
    voter = ExampleVoter(examples, _ToyEmbedder(), method="knn", k=3, temperature=0.05)
    assert len(voter) == 4
    got = voter.vote("i want my money")
    assert got[0][0] == "i:refund" and got[0][1] > 0.9
    assert abs(sum(s for _, s in got) - 1.0) < 1e-6
    assert voter.vote("forgot my password")[0][0] == "i:login"
    # a hot temperature spreads the vote over the k neighbours: 2 refund examples vs 1 login example
    flat = dict(ExampleVoter(examples, _ToyEmbedder(), method="knn", k=3, temperature=1e6).vote("refund"))
    assert flat["i:refund"] == pytest.approx(2 / 3, abs=1e-3) and flat["i:login"] == pytest.approx(1 / 3, abs=1e-3)
    # a text shared by two entities votes for both
    shared = ExampleVoter([("a", "refund"), ("b", "refund")], _ToyEmbedder(), method="knn", k=1).vote("refund")
    assert sorted(shared) == [("a", 0.5), ("b", 0.5)]
    assert ExampleVoter([], _ToyEmbedder()).vote("anything") == []
    with pytest.raises(ConfigurationError):
        ExampleVoter(examples, _ToyEmbedder(), k=0)
    with pytest.raises(ConfigurationError):
        ExampleVoter(examples, _ToyEmbedder(), temperature=0.0)
    with pytest.raises(ConfigurationError, match="linear"):
        ExampleVoter(examples, _ToyEmbedder(), method="svm")


def test_linear_example_voter_learns_from_embeddings_and_words() -> None:
    from retrieval.graph_context import ExampleVoter

    examples = [("i:refund", "refund please"), ("i:refund", "money back"), ("i:refund", "refund my money")]
    examples += [("i:login", "password reset"), ("i:login", "cannot login"), ("i:login", "login password")]
    voter = ExampleVoter(examples, _ToyEmbedder())  # linear is the default
    got = voter.vote("i want my money")
    assert got[0][0] == "i:refund" and got[0][1] > 0.5 and abs(sum(s for _, s in got) - 1.0) < 1e-6
    assert voter.vote("forgot my password")[0][0] == "i:login"
    # words the embedder cannot tell apart (same vector for all): only the lexical model separates them
    words = [("a", "alpha beta"), ("a", "alpha gamma"), ("b", "delta epsilon"), ("b", "delta zeta")]
    voter = ExampleVoter(words, _ToyEmbedder())
    dense = dict(voter.vote("alpha"))
    assert dense["a"] == pytest.approx(0.5, abs=0.05)
    lexical = voter.vote("alpha", lexical=True)
    assert lexical[0][0] == "a" and lexical[0][1] > 0.6 and voter.vote("delta", lexical=True)[0][0] == "b"
    # one entity: nothing to learn, the k-NN vote answers
    assert ExampleVoter([("a", "refund"), ("a", "money")], _ToyEmbedder()).vote("refund") == [("a", 1.0)]


def test_example_voter_from_store_and_graph_context(tmp_path: Path) -> None:
    from kg.ladybug_store import LadybugStore
    from retrieval.graph_context import ExampleVoter

    store = LadybugStore.open(tmp_path / "g")
    try:
        store.upsert(
            [
                Entity("i:refund", "Intent", "get refund", attributes={"examples": ["refund please"]}),
                Entity("i:login", "Intent", "recover password"),
                Entity("c:acct", "SupportCategory", "account", attributes={"examples": ["login"]}),
                Entity("d:1", "Document", "", attributes={"question": "cannot login"}, description="Reset it."),
                Entity("d:2", "Document", "", attributes={"question": "money back"}, description="Refunds take 5d."),
                Entity("d:3", "Document", "", attributes={"question": "password reset"}, description="Use the link."),
            ],
            [
                Relation("d:1", "ANSWERS", "i:login"),
                Relation("d:2", "ANSWERS", "i:refund"),
                Relation("d:3", "ANSWERS", "i:login"),
                Relation("d:1", "ABOUT", "c:acct"),
            ],
        )
        voter = ExampleVoter.from_store(store, _ToyEmbedder(), entity_types=("Intent",), method="knn", k=2)
        assert voter is not None and len(voter) == 4  # only Intent examples and questions of their documents
        assert ExampleVoter.from_store(store, _ToyEmbedder(), entity_types=("Nothing",)) is None
        ctx = GraphContext(store, None, example_voter=voter, vote_types=("Intent",), hit_vote_weight=0.5)
        hits = ctx.collect("my password does not work, login fails")
        assert hits.seeds[0].entity_id == "i:login" and hits.seeds[0].method == "examples"
        assert {d for d, _ in hits.documents[:2]} == {"d:1", "d:3"}
        # documents retrieved elsewhere vote too: half the score each way
        mixed = ctx.voted("refund", hit_docs=["d:1", "d:3"])
        assert [s.method for s in mixed] == ["examples+votes"] * len(mixed)
        share = {s.entity_id: s.score for s in mixed}
        assert share["i:refund"] > 0.49 and share["i:login"] > 0.49
        assert [s.entity_id for s in ctx.voted("refund")][:1] == ["i:refund"]
    finally:
        store.close()


def test_prepare_fits_the_linear_models_before_the_first_vote() -> None:
    from retrieval.graph_context import ExampleVoter

    voter = ExampleVoter([("a", "refund please"), ("b", "password reset")], _ToyEmbedder())
    voter.prepare()
    assert set(voter._models) == {False, True} and voter._matrix is not None
    fitted = dict(voter._models)
    assert voter.vote("refund")[0][0] == "a" and voter._models == fitted  # the vote reuses them
    ExampleVoter([], _ToyEmbedder()).prepare()  # nothing to prepare: no error
