"""One contract, every backend: the behaviour GraphStore promises."""

from __future__ import annotations

from datetime import datetime

import pytest

from kg.store import Entity, GraphStore, Relation
from kgnlp.errors import KgnlpError, NotFoundError, ValidationError


def snapshot(s: GraphStore) -> tuple[list[Entity], list[tuple[str, str, str]]]:
    return list(s.iter_entities()), sorted(s.iter_triples())


def test_roundtrip_all_fields(loaded: GraphStore) -> None:
    e = loaded.get("c:socgen")
    assert e.name == "Société Générale"
    assert e.description == 'bank, "quoted"\nsecond line'
    assert e.aliases == ["SocGen"]
    n = loaded.get("c:nvda")
    assert n.attributes == {"ticker": "NVDA", "founded": 1993}
    assert n.type == "Company" and n.source == "t"
    ts = datetime(2024, 5, 1, 12, 30)
    loaded.upsert([], [Relation("c:amd", "REPORTED", "c:nvda", {"q": "Q1"}, 2.5, ts, "news")])
    r = next(x for x in loaded.iter_relations() if x.type == "REPORTED")
    assert (r.attributes, r.weight, r.timestamp, r.source) == ({"q": "Q1"}, 2.5, ts, "news")


def test_get_missing_raises_not_found(store: GraphStore) -> None:
    with pytest.raises(NotFoundError):
        store.get("nope")
    assert store.get_many(["nope"]) == {}


def test_reupsert_adds_nothing(loaded: GraphStore, small_graph) -> None:
    before = snapshot(loaded)
    ents, rels = small_graph
    res = loaded.upsert(ents, rels)
    assert res.changed == 0
    assert snapshot(loaded) == before
    assert loaded.upsert_triples([r.key for r in rels]).changed == 0
    assert loaded.stats().relations == len(rels)


def test_upsert_updates_changed_records(loaded: GraphStore) -> None:
    res = loaded.upsert(
        [Entity("c:amd", "Company", "AMD Inc.", aliases=["AMD"])],
        [Relation("c:nvda", "PEER_OF", "c:amd", weight=0.9, source="t")],
    )
    assert (res.entities_updated, res.relations_updated) == (1, 1)
    assert res.entities_added == res.relations_added == 0
    assert loaded.get("c:amd").name == "AMD Inc."
    w = [r.weight for r in loaded.iter_relations() if r.type == "PEER_OF"]
    assert w == [0.9]


def test_duplicates_inside_one_batch_count_once(store: GraphStore) -> None:
    res = store.upsert_triples([("a", "r", "b"), ("a", "r", "b"), ("b", "r", "a")])
    assert (res.entities_added, res.relations_added) == (2, 2)
    res = store.upsert([], [Relation("a", "s", "b"), Relation("a", "s", "b")])
    assert res.relations_added == 1


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("nvidia", "c:nvda"),
        ("NVDA", "c:nvda"),
        ("nvidia corp", "c:nvda"),
        ("societe generale", "c:socgen"),
        ("SOCIÉTÉ GÉNÉRALE", "c:socgen"),
        ("socgen", "c:socgen"),
        ("Advanced Micro Devices", "c:amd"),
    ],
)
def test_find_case_and_accent_insensitive(loaded: GraphStore, query: str, expected: str) -> None:
    assert [e.id for e in loaded.find(query)] == [expected]


def test_find_by_type_and_contains(loaded: GraphStore) -> None:
    assert {e.id for e in loaded.find(type="Company")} == {"c:nvda", "c:amd", "c:socgen"}
    assert loaded.find("nvidia", type="City") == []
    hits = [e.id for e in loaded.find("semi", mode="contains")]
    assert hits == ["s:semis"]
    assert loaded.find("") == []
    assert [e.id for e in loaded.find("generale", mode="contains")] == ["c:socgen"]


def test_neighbors_hops_paths_and_filters(loaded: GraphStore) -> None:
    one = loaded.neighbors("c:nvda", hops=1, direction="out")
    assert set(one.entities) == {"c:nvda", "s:semis", "c:amd", "city:sc"}
    assert all(p.hops == 1 and p.nodes[0] == "c:nvda" for p in one.paths)
    two = loaded.neighbors("c:nvda", hops=2, direction="out")
    assert "s:it" in two.entities
    path = next(p for p in two.paths if p.nodes[-1] == "s:it")
    assert path.nodes == ("c:nvda", "s:semis", "s:it")
    assert [r.type for r in path.relations] == ["IN_SUB_INDUSTRY", "PART_OF"]
    assert ("s:semis", "PART_OF", "s:it") in two.triples()
    assert "t" in two.provenance["sources"]
    only = loaded.neighbors("c:nvda", hops=2, relation_types=["PEER_OF"], direction="both")
    assert set(only.entities) == {"c:nvda", "c:amd"}
    inbound = loaded.neighbors("s:semis", hops=1, direction="in")
    assert set(inbound.entities) == {"s:semis", "c:nvda", "c:amd"}
    both = loaded.neighbors("s:semis", hops=1, direction="both")
    assert set(both.entities) == {"s:semis", "c:nvda", "c:amd", "s:it"}
    three = loaded.neighbors("s:it", hops=3, direction="in")
    assert set(three.entities) == {"s:it", "s:semis", "c:nvda", "c:amd"}


def test_neighbors_limit_and_validation(loaded: GraphStore) -> None:
    sub = loaded.neighbors("city:sc", hops=2, limit=1)
    assert len(sub.entities) == 2 and sub.truncated
    with pytest.raises(ValidationError):
        loaded.neighbors("c:nvda", hops=4)
    with pytest.raises(ValidationError):
        loaded.neighbors("c:nvda", hops=0)
    with pytest.raises(ValidationError):
        loaded.neighbors("c:nvda", direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        loaded.neighbors("missing")


def test_delete_entity_removes_edges(loaded: GraphStore) -> None:
    loaded.delete_entity("s:semis")
    with pytest.raises(NotFoundError):
        loaded.get("s:semis")
    assert all("s:semis" not in (h, t) for h, _, t in loaded.iter_triples())
    assert loaded.stats().relations == 3
    with pytest.raises(NotFoundError):
        loaded.delete_entity("s:semis")


def test_delete_relations_removes_one_type_leaving_the_given_heads(loaded: GraphStore) -> None:
    before = sorted(loaded.iter_triples())
    n = loaded.delete_relations(["c:nvda", "c:amd", "nope"], "IN_SUB_INDUSTRY")
    kept = [t for t in before if not (t[0] in ("c:nvda", "c:amd") and t[1] == "IN_SUB_INDUSTRY")]
    assert sorted(loaded.iter_triples()) == kept
    assert n == len(before) - len(kept) == 2
    assert loaded.get("c:nvda").name  # the entities stay
    assert loaded.delete_relations([], "PEER_OF") == 0 and loaded.delete_relations(["c:nvda"], "NOPE") == 0


def test_stats(loaded: GraphStore) -> None:
    st = loaded.stats()
    assert (st.entities, st.relations) == (6, 6)
    assert st.entity_types["Company"] == 3
    assert st.relation_types == {"HEADQUARTERED_IN": 2, "IN_SUB_INDUSTRY": 2, "PART_OF": 1, "PEER_OF": 1}


def test_missing_endpoint_rejected_and_store_unchanged(loaded: GraphStore) -> None:
    before = snapshot(loaded)
    with pytest.raises(ValidationError):
        loaded.upsert([Entity("new", "X", "New")], [Relation("new", "R", "ghost")])
    with pytest.raises(ValidationError):
        loaded.upsert_triples([("c:amd", "R", "ghost")], create_missing=False)
    assert snapshot(loaded) == before
    res = loaded.upsert([], [Relation("c:amd", "R", "ghost")], create_missing=True)
    assert res.entities_added == 1 and loaded.get("ghost").name == "ghost"


def test_invalid_records_rejected(store: GraphStore) -> None:
    with pytest.raises(ValidationError):
        store.upsert([Entity("", "X")])
    with pytest.raises(ValidationError):
        store.upsert([], [Relation("a", "", "b")], create_missing=True)
    with pytest.raises(ValidationError):
        store.upsert([], [Relation("a", "r", "b", weight=float("nan"))], create_missing=True)
    assert store.stats().entities == 0


def test_failure_inside_write_rolls_back(loaded: GraphStore) -> None:
    before = snapshot(loaded)

    def boom(stage: str, done: int, total: int) -> None:
        if stage == "relations":
            raise RuntimeError("injected failure mid-write")

    with pytest.raises((RuntimeError, KgnlpError)):
        loaded.upsert(
            [Entity("x1", "X", "x one"), Entity("c:amd", "Company", "changed")],
            [Relation("x1", "R", "c:amd")],
            progress=boom,
        )
    with pytest.raises((RuntimeError, KgnlpError)):
        loaded.upsert_triples([("y1", "R", "y2")], progress=boom)
    assert snapshot(loaded) == before
    assert loaded.upsert([Entity("x1", "X", "x one")]).entities_added == 1


def test_iterators(loaded: GraphStore, small_graph) -> None:
    ents = list(loaded.iter_entities(batch_size=2))
    assert [e.id for e in ents] == sorted(e.id for e in small_graph[0])
    assert len(list(loaded.iter_triples())) == 6
    assert len(list(loaded.iter_relations())) == 6


def test_pyg_export(loaded: GraphStore) -> None:
    from kg.pyg import to_pyg

    ex = to_pyg(loaded)
    assert ex.data.num_nodes == 6 and ex.data.edge_index.shape == (2, 6)
    assert set(ex.relation_index) == {"HEADQUARTERED_IN", "IN_SUB_INDUSTRY", "PART_OF", "PEER_OF"}
    i = ex.data.edge_type.tolist().index(ex.relation_index["PART_OF"])
    assert ex.index_to_entity[int(ex.data.edge_index[0, i])] == "s:semis"
    het = to_pyg(loaded, hetero=True)
    assert het.data["Company"].num_nodes == 3
    assert het.data["Company", "PEER_OF", "Company"].edge_index.shape == (2, 1)
