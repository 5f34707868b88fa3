"""The catalogue in the graph store, the import files, cold items and training jobs (real ladybug, real SQLite)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from apps.recommend.catalogue_graph import ITEM_TYPE, catalogue_rows, read_catalogue, write_catalogue
from apps.recommend.data import Catalogue
from apps.recommend.importer import CatalogueFiles, apply_import, read_import, write_files
from apps.recommend.interactions import InteractionLog, InteractionRow
from apps.recommend.synthetic import synthetic_catalogue
from kg.registry import GraphRegistry
from kgnlp.errors import ConflictError, NotFoundError, ValidationError


@pytest.fixture(scope="module")
def synthetic() -> Catalogue:
    return synthetic_catalogue()


@pytest.fixture
def graphs(tmp_path: Path) -> Iterator[GraphRegistry]:
    with GraphRegistry(tmp_path / "graphs") as reg:
        yield reg


@pytest.fixture
def log(tmp_path: Path) -> Iterator[InteractionLog]:
    with InteractionLog(f"sqlite:///{tmp_path / 'state.sqlite'}") as lg:
        yield lg


def _facts(c: Catalogue) -> set[tuple[str, str, str]]:
    gid = [*c.item_ids, *c.entity_ids[c.n_items :]]
    return {(gid[h], c.relations[r], gid[t]) for h, r, t in c.triples.tolist()}


def test_catalogue_round_trips_through_the_graph_store(synthetic: Catalogue, graphs: GraphRegistry) -> None:
    store = graphs.get("recommend-synthetic", create=True)
    first = write_catalogue(store, synthetic, source="synthetic")
    assert first.entities_added == synthetic.n_entities and first.relations_added == len(synthetic.triples)
    assert write_catalogue(store, synthetic, source="synthetic").changed == 0  # idempotent
    assert store.stats().entity_types[ITEM_TYPE] == synthetic.n_items
    back = read_catalogue(store, "synthetic", catalogue_rows(synthetic))
    assert back.n_items == synthetic.n_items and back.n_entities == synthetic.n_entities
    assert _facts(back) == _facts(synthetic)
    index = {x: i for i, x in enumerate(back.item_ids)}
    for i, x in enumerate(synthetic.item_ids):
        j = index[x]
        assert (back.item_names[j], back.item_tags[j]) == (synthetic.item_names[i], synthetic.item_tags[i])
    assert len(back.interactions) == len(synthetic.interactions)
    moved = {(back.user_index(synthetic.user_ids[u]), index[synthetic.item_ids[i]])
             for u, i in synthetic.interactions.pairs()}  # fmt: skip
    assert back.interactions.pairs() == moved


def test_an_empty_graph_is_not_a_catalogue(graphs: GraphRegistry) -> None:
    with pytest.raises(NotFoundError, match="kgnlp recommend import"):
        read_catalogue(graphs.get("recommend-none", create=True), "none")


def test_import_files_round_trip_and_reimport_changes_nothing(
    synthetic: Catalogue, graphs: GraphRegistry, log: InteractionLog, tmp_path: Path
) -> None:
    files = write_files(synthetic, tmp_path / "files")
    store = graphs.get("recommend-shop", create=True)
    out = apply_import(read_import(files, store), store, log, "shop")
    assert out["items"] == synthetic.n_items and out["interactions_added"] == len(synthetic.interactions)
    again = apply_import(read_import(files, store), store, log, "shop")
    assert (again["entities_added"], again["entities_updated"], again["facts_added"], again["interactions_added"]) == (
        0, 0, 0, 0,
    )  # fmt: skip
    back = read_catalogue(store, "shop", log.rows("shop"))
    assert _facts(back) == _facts(synthetic) and len(back.interactions) == len(synthetic.interactions)
    assert log.count("synthetic") == 0  # catalogues do not share events


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_attributes_become_facts_and_iso_times_are_read(graphs: GraphRegistry, log: InteractionLog,
                                                             tmp_path: Path) -> None:  # fmt: skip
    items = _write(tmp_path / "items.csv", "item_id,name,text,tags,brand,category\n"
                   'tv-1,"Screen 55, OLED",A 55 inch TV,tv;oled,Acme,category:tv\n'
                   "tv-2,Screen 43,,tv,Acme,\n")  # fmt: skip
    rels = _write(tmp_path / "rels.csv",
                  "head,relation,tail,tail_name\ncategory:category:tv,subcategory_of,cat:video,Video\n")  # fmt: skip
    inter = _write(tmp_path / "inter.csv", "user_id,item_id,weight,ts\nu1,tv-1,1,2026-01-02T00:00:00Z\nu1,tv-2,2,\n")
    store = graphs.get("recommend-tv", create=True)
    apply_import(read_import(CatalogueFiles(items, rels, inter), store), store, log, "tv")
    tv1 = store.get("tv-1")
    assert tv1.type == ITEM_TYPE and tv1.name == "Screen 55, OLED" and tv1.attributes["tags"] == ["tv", "oled"]
    assert tv1.attributes["text"] == "A 55 inch TV"
    triples = set(store.iter_triples())
    assert ("tv-1", "brand", "brand:Acme") in triples and ("tv-2", "brand", "brand:Acme") in triples
    assert ("category:category:tv", "subcategory_of", "cat:video") in triples
    assert not any(h == "tv-2" and r == "category" for h, r, _ in triples)  # empty cell: no fact
    rows = sorted(log.rows("tv"), key=lambda r: r.item_id)
    assert rows[0].ts == pytest.approx(1767312000.0) and rows[1].ts == 0.0 and rows[1].weight == 2.0


def test_bad_rows_are_reported_by_file_and_line_and_nothing_is_written(
    graphs: GraphRegistry, log: InteractionLog, tmp_path: Path
) -> None:
    items = _write(tmp_path / "items.jsonl", "\n".join([
        json.dumps({"item_id": "a", "name": "Alpha", "tags": ["x"]}),
        json.dumps({"item_id": "b", "name": "   "}),  # blank name
        "{not json",
        json.dumps({"item_id": "a", "name": "Alpha again"}),  # duplicate id
        json.dumps({"item_id": "c", "name": "C" * 501}),  # over the cap
        json.dumps({"item_id": "d", "name": "Delta", "colour": "red"}),  # unknown field
    ]) + "\n")  # fmt: skip
    rels = _write(tmp_path / "rels.csv", "head,relation,tail\nghost,related_to,a\na,bad relation,b\n")
    inter = _write(tmp_path / "inter.csv", "user_id,item_id,weight\nu1,a,1\nu1,zzz,1\nu 2,a,1\nu3,a,nan\n")
    store = graphs.get("recommend-bad", create=True)
    with pytest.raises(ValidationError) as e:
        read_import(CatalogueFiles(items, rels, inter), store)
    msg = str(e.value)
    for where in ("items.jsonl:2: name", "items.jsonl:3: not JSON",
                  "items.jsonl:4: item_id 'a' already given at items.jsonl:1", "items.jsonl:5: name",
                  "items.jsonl:6: colour", "rels.csv:2: head 'ghost'", "rels.csv:3: relation",
                  "inter.csv:3: unknown item 'zzz'", "inter.csv:4: user_id", "inter.csv:5: weight"):  # fmt: skip
        assert where in msg, (where, msg)
    assert "nothing was imported" in msg
    assert store.stats().entities == 0 and log.count("bad") == 0


def test_an_interaction_may_name_an_item_imported_earlier(graphs: GraphRegistry, log: InteractionLog,
                                                          tmp_path: Path) -> None:  # fmt: skip
    store = graphs.get("recommend-two", create=True)
    items = _write(tmp_path / "items.csv", "item_id,name,genre\na,Alpha,rock\n")
    apply_import(read_import(CatalogueFiles(items), store), store, log, "two")
    inter = _write(tmp_path / "inter.csv", "user_id,item_id\nu1,a\nu1,genre:rock\n")
    with pytest.raises(ValidationError, match=r"inter\.csv:3: unknown item 'genre:rock'"):
        read_import(CatalogueFiles(interactions=inter), store)  # an entity, not an item
    ok = _write(tmp_path / "ok.csv", "user_id,item_id,event_id\nu1,a,e1\nu1,a,e1\n")
    out = apply_import(read_import(CatalogueFiles(interactions=ok), store), store, log, "two")
    assert out["interactions_added"] == 1  # one event id, stored once


def test_files_that_are_not_csv_or_jsonl_or_not_utf8_are_refused(graphs: GraphRegistry, tmp_path: Path) -> None:
    store = graphs.get("recommend-x", create=True)
    with pytest.raises(ValidationError, match=r"expected a \.csv or \.jsonl"):
        read_import(CatalogueFiles(_write(tmp_path / "items.txt", "x")), store)
    bad = tmp_path / "items.csv"
    bad.write_bytes(b"item_id,name\n\xff\xfe,x\n")
    with pytest.raises(ValidationError, match="not UTF-8"):
        read_import(CatalogueFiles(bad), store)
    with pytest.raises(ValidationError, match="cannot read"):
        read_import(CatalogueFiles(tmp_path / "missing.csv"), store)


def test_interaction_log_is_keyed_and_atomic(log: InteractionLog) -> None:
    rows = [InteractionRow("u", "i", 1.0, 5.0), InteractionRow("u", "i", 1.0, 5.0), InteractionRow("u", "j")]
    assert log.add("c", rows) == 2 and log.add("c", rows) == 0
    assert log.add("d", rows) == 2  # per catalogue
    assert log.count("c") == 2 and log.clear("c") == 2 and log.count("d") == 2


# -- cold items -----------------------------------------------------------------------------------
def _small_recommender(c: Catalogue) -> object:
    from apps.recommend.models.embedding import EmbeddingModel
    from apps.recommend.ranker import LogisticRanker
    from apps.recommend.recommender import EMBEDDING_MODELS, FEATURES, Recommender

    rng = np.random.default_rng(0)
    text = rng.normal(size=(c.n_items, 8)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    w, b = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    models = {}
    for name in EMBEDDING_MODELS:
        items = text @ w + b if name == "text_tower" else rng.normal(size=(c.n_items, 4)).astype(np.float32)
        models[name] = EmbeddingModel(name, rng.normal(size=(c.n_users, 4)).astype(np.float32), items)
    k = len(FEATURES)
    ranker = LogisticRanker(list(FEATURES), np.zeros(k), np.ones(k), np.ones(k), 0.0)
    return Recommender(c, models, np.log1p(c.item_counts()), text, np.zeros(c.n_items, np.float32), ranker)


def test_new_items_get_text_tower_and_graph_neighbour_vectors(synthetic: Catalogue) -> None:
    from apps.recommend.cold_start import NewItem, add_items, text_tower_map

    rec = _small_recommender(synthetic)
    tower = rec.models["text_tower"]  # type: ignore[attr-defined]
    m = text_tower_map(rec.text, tower.items)  # type: ignore[attr-defined]
    x = np.concatenate([rec.text, np.ones((synthetic.n_items, 1), np.float32)], 1)  # type: ignore[attr-defined]
    np.testing.assert_allclose(x @ m, tower.items, atol=1e-4)  # the linear tower is recovered exactly
    genre = "genre:jazz"
    peers = [i for i in range(synthetic.n_items) if (synthetic.item_ids[i], "genre", genre) in _facts(synthetic)]
    vec = np.full((1, 8), 0.1, np.float32)
    new = NewItem(
        "item:new",
        "New Quartet",
        ["saxophone"],
        "a jazz quartet",
        [("genre", genre, "jazz"), ("label", "label:new", "Fresh")],
    )
    out = add_items(rec, [new], vec, m)  # type: ignore[arg-type]
    c2 = out.catalogue
    n = synthetic.n_items
    assert c2.n_items == n + 1 and c2.item_index("item:new") == n
    assert c2.item_ids[:n] == synthetic.item_ids  # old indices unchanged
    np.testing.assert_allclose(out.models["text_tower"].items[n], vec[0] @ m[:-1] + m[-1], rtol=1e-4)
    for name in ("kg", "bpr", "lightgcn"):  # collaborative vectors and popularity from its graph neighbours
        np.testing.assert_allclose(out.models[name].items[n], rec.models[name].items[peers].mean(0), rtol=1e-5)  # type: ignore[attr-defined]
    assert out.popularity[n] == pytest.approx(rec.popularity[peers].mean())  # type: ignore[attr-defined]
    alone = add_items(rec, [NewItem("item:alone", "Alone", facts=[("label", "label:none", "")])], vec, m)  # type: ignore[arg-type]
    assert not alone.models["kg"].items[n].any() and alone.popularity[n] == rec.popularity.min()  # type: ignore[attr-defined]
    assert _facts(synthetic) | {("item:new", "genre", genre), ("item:new", "label", "label:new")} == _facts(c2)
    assert c2.item_text(n) == "New Quartet. a jazz quartet. tags: saxophone"
    assert np.isfinite(out.score(out.context(np.array([n, 0])))).all()


# -- training jobs ---------------------------------------------------------------------------------
def test_one_training_job_at_a_time_and_failures_are_reported() -> None:
    from apps.recommend.jobs import TrainingJobs

    gate = threading.Event()

    def work(progress):  # type: ignore[no-untyped-def]
        progress("bpr", 0.3)
        gate.wait(10)
        if work.fail:  # type: ignore[attr-defined]
            raise RuntimeError("disk full")
        return {"version": "v1"}

    work.fail = False  # type: ignore[attr-defined]
    jobs = TrainingJobs(work)
    job = jobs.start()
    with pytest.raises(ConflictError, match=job.job_id):
        jobs.start()
    gate.set()
    jobs.wait(10)
    done = jobs.get(job.job_id)
    assert (done.status, done.progress, done.result) == ("succeeded", 1.0, {"version": "v1"})
    work.fail = True  # type: ignore[attr-defined]
    failed = jobs.start()
    jobs.wait(10)
    assert jobs.get(failed.job_id).status == "failed" and "disk full" in (jobs.get(failed.job_id).error or "")
    with pytest.raises(NotFoundError):
        jobs.get("nope")


def test_export_keeps_every_fact_of_an_item_with_more_than_the_per_item_cap(
    graphs: GraphRegistry, log: InteractionLog, tmp_path: Path
) -> None:
    from apps.recommend.data import Interactions

    n_tags = 150  # over ItemIn.facts' cap of 100: the rest must go to relations.csv, not be dropped
    triples = np.array([(0, 0, 2 + k) for k in range(n_tags)] + [(1, 0, 2)], np.int64)
    z = np.zeros(1, np.int64)
    cat = Catalogue("many", ["a", "b"], ["A", "B"], [[], []], ["u"], ["a", "b", *(f"tag:{k}" for k in range(n_tags))],
                    ["A", "B", *(f"t{k}" for k in range(n_tags))], ["has_tag"], triples,
                    Interactions(z, z, np.ones(1, np.float32), np.zeros(1)))  # fmt: skip
    store = graphs.get("recommend-many", create=True)
    apply_import(read_import(write_files(cat, tmp_path / "f"), store), store, log, "many")
    assert _facts(read_catalogue(store, "many", log.rows("many"))) == _facts(cat)
