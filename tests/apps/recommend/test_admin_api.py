"""Catalogue administration over real HTTP: cold items, deletes, bulk events, retraining without downtime.

A small real model (the synthetic catalogue read from its ladybug graph, MiniLM text vectors)
behind a LiveServer; the graph store and the interaction log are the real ones of the service.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

FIT_SCALE = 0.1


@pytest.fixture(scope="module")
def api(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from apps.core.services import Services, open_graph_registry
    from apps.core.settings import load_settings
    from apps.main import create_app
    from apps.recommend.service import load
    from apps.recommend.setup import train_model
    from apps.recommend.train import FitConfig
    from models.loading import load_sentence_embedder

    home = tmp_path_factory.mktemp("recadmin")
    embedder = load_sentence_embedder(model_home / "models" / "all-minilm-l6-v2")
    fit = FitConfig(dim=32).scaled(FIT_SCALE)
    settings = load_settings(home=home, database_url=f"sqlite:///{home / 'state.sqlite'}")
    services = Services(settings=settings, embedder=embedder)
    services.graphs = open_graph_registry(settings)
    info = train_model(home, "synthetic", embedder, cfg=fit, graphs=services.graphs)
    assert info["status"] == "trained"
    services.components["recommend"] = load(settings, services)
    assert services.components["recommend"].status == "ready"
    services.recommend_admin.fit = fit
    with LiveServer(create_app(settings, services=services)) as live, httpx.Client(base_url=live.url, timeout=60) as c:
        yield {"client": c, "services": services, "home": home, "info": info}
    services.recommend_admin.jobs.wait(120)
    services.close()


def _items(c: httpx.Client, *items: dict[str, Any]) -> httpx.Response:
    return c.put("/admin/recommend/items", json={"items": list(items)})


def _ids(body: dict[str, Any]) -> list[str]:
    return [x["item_id"] for x in body["items"]]


def test_explanation_paths_exist_in_the_graph_store(api: dict[str, Any]) -> None:
    c, services = api["client"], api["services"]
    store = services.graphs.get("recommend-synthetic")
    facts = set(store.iter_triples())
    seen_kg = 0
    for user in ("user:0", "user:1", "user:2"):
        for x in c.post("/recommend", json={"user_id": user, "k": 20}).json()["items"]:
            e = x["explanation"]
            if e["kind"] != "kg_path":
                continue
            a, mid, b = e["path"]
            assert (a["id"], a["relation"], mid["id"]) in facts and (b["id"], mid["relation"], mid["id"]) in facts
            assert store.get(a["id"]).type == "Item" and store.get(b["id"]).type == "Item"
            seen_kg += 1
    assert seen_kg >= 10


def test_an_imported_cold_item_is_recommended_at_once_to_a_matching_user(api: dict[str, Any]) -> None:
    c, services = api["client"], api["services"]
    cat = services.recommend.catalogue
    doom = [cat.item_ids[i] for i, t in enumerate(cat.item_tags) if t and t[0] == "doom metal"]
    new = {"item_id": "item:cold-doom", "name": "Sludge Cathedral",
           "text": "slow, crushing doom metal with sludge riffs and a dark, heavy atmosphere",
           "tags": ["doom metal", "slow", "heavy", "sludge", "dark"],
           "facts": [{"relation": "genre", "entity_id": "genre:doom metal", "entity_name": "doom metal"}]}  # fmt: skip
    r = _items(c, new)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == 1 and r.json()["items"] == cat.n_items + 1
    body = c.post("/recommend", json={"recent_items": doom[:8], "k": 20}).json()
    assert "item:cold-doom" in _ids(body), "a new item matching the user's history was not in the top 20"
    hit = next(x for x in body["items"] if x["item_id"] == "item:cold-doom")
    assert hit["explanation"]["kind"] == "kg_path" and hit["explanation"]["path"][1]["id"] == "genre:doom metal"
    jazz = [cat.item_ids[i] for i, t in enumerate(cat.item_tags) if t and t[0] == "jazz"][:8]
    assert "item:cold-doom" not in _ids(c.post("/recommend", json={"recent_items": jazz, "k": 20}).json())
    sim = c.get("/items/item:cold-doom/similar", params={"k": 10}).json()["items"]
    assert sum("doom metal" in x["tags"] for x in sim) >= 5
    store = services.graphs.get("recommend-synthetic")
    assert store.get("item:cold-doom").attributes["tags"][0] == "doom metal"
    assert ("item:cold-doom", "genre", "genre:doom metal") in set(store.iter_triples())
    # updating it changes its text and keeps one item
    r = _items(c, {**new, "name": "Sludge Cathedral (remastered)"})
    assert r.json() == {"added": 0, "updated": 1, "items": cat.n_items + 1}


def test_a_deleted_item_is_never_recommended_again(api: dict[str, Any]) -> None:
    c, services = api["client"], api["services"]
    top = _ids(c.post("/recommend", json={"user_id": "user:3", "k": 5}).json())
    r = c.delete(f"/admin/recommend/items/{top[0]}")
    assert r.status_code == 204, r.text
    assert top[0] not in _ids(c.post("/recommend", json={"user_id": "user:3", "k": 100}).json())
    assert c.get(f"/items/{top[0]}/similar").status_code == 404
    assert c.post("/recommend", json={"recent_items": [top[0]], "k": 5}).status_code == 404
    assert c.delete(f"/admin/recommend/items/{top[0]}").status_code == 404
    assert c.delete("/admin/recommend/items/genre:jazz").status_code == 404  # an entity, not an item
    with pytest.raises(Exception, match=r"not found|unknown"):
        services.graphs.get("recommend-synthetic").get(top[0])


def test_bad_admin_input_gets_a_clear_4xx_and_stores_nothing(api: dict[str, Any]) -> None:
    c, services = api["client"], api["services"]
    admin = services.recommend_admin
    n_events = admin.interactions.count("synthetic")
    n_entities = services.graphs.get("recommend-synthetic").stats().entities
    huge = [{"item_id": f"bulk:{k}", "name": f"Bulk {k}"} for k in range(10_000)]
    r = _items(c, *huge)
    assert r.status_code == 422 and "1000" in r.json()["error"]["message"]
    r = _items(c, {"item_id": "dup", "name": "A"}, {"item_id": "dup", "name": "B"})
    assert r.status_code == 422 and "appears twice" in r.json()["error"]["message"]
    for bad in ({"item_id": " padded ", "name": "x"}, {"item_id": "x", "name": "   "},
                {"item_id": "x", "name": "n" * 501}, {"item_id": "x", "name": "x", "text": "t" * 5001},
                {"item_id": "x", "name": "x", "facts": [{"relation": "has space", "entity_id": "e"}]}):  # fmt: skip
        assert _items(c, bad).status_code == 422, bad
    events = [{"user_id": "u1", "item_id": "item:1"}, {"user_id": "u1", "item_id": "item:unknown"}]
    r = c.post("/admin/recommend/interactions", json={"interactions": events})
    assert r.status_code == 404 and "item:unknown" in r.json()["error"]["message"]
    r = c.post("/admin/recommend/interactions", json={"interactions": [events[0]] * 10_000})
    assert r.status_code == 422
    r = c.post("/admin/recommend/interactions", json={"interactions": [{"user_id": "u1", "item_id": "item:1",
                                                                         "weight": -1}]})  # fmt: skip
    assert r.status_code == 422 and "weight" in r.json()["error"]["message"]
    assert admin.interactions.count("synthetic") == n_events
    assert services.graphs.get("recommend-synthetic").stats().entities == n_entities
    assert c.get("/admin/recommend/train/nope").status_code == 404


def test_retraining_runs_beside_serving_swaps_atomically_and_refuses_a_second_job(api: dict[str, Any]) -> None:
    c, services = api["client"], api["services"]
    before = c.get("/health/ready").json()["components"]["recommend"]
    assert before["version"] and before["trained_at"]
    # new events for a new user, so the catalogue changed and training is not a no-op
    user = "user:admin-new"
    svc = services.recommend
    played = [x for x in svc.catalogue.item_ids[:100] if x not in svc.hidden_ids][:20]
    events = [{"user_id": user, "item_id": x, "weight": 2, "event_id": f"adm-{x}"} for x in played]
    r = c.post("/admin/recommend/interactions", json={"interactions": events})
    assert r.json() == {"accepted": 20, "duplicates": 0}
    assert c.post("/admin/recommend/interactions", json={"interactions": events}).json()["duplicates"] == 20
    job = c.post("/admin/recommend/train")
    assert job.status_code == 202, job.text
    job_id = job.json()["job_id"]
    second = c.post("/admin/recommend/train")
    assert second.status_code == 409 and job_id in second.json()["error"]["message"]
    errors: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:  # /recommend answers throughout
        with httpx.Client(base_url=str(c.base_url), timeout=30) as cc:
            while not stop.is_set():
                r = cc.post("/recommend", json={"user_id": "user:4", "k": 10})
                if r.status_code != 200 or len(r.json()["items"]) != 10:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                time.sleep(0.02)

    t = threading.Thread(target=keep_asking)
    t.start()
    deadline = time.monotonic() + 300
    stages = set()
    while time.monotonic() < deadline:
        st = c.get(f"/admin/recommend/train/{job_id}").json()
        stages.add(st["stage"])
        if st["status"] != "running":
            break
        time.sleep(0.2)
    stop.set()
    t.join()
    assert st["status"] == "succeeded", st
    assert st["progress"] == 1.0 and st["result"]["status"] == "trained" and len(stages) >= 2
    assert not errors, errors[:3]
    after = c.get("/health/ready").json()["components"]["recommend"]
    assert after["version"] != before["version"]
    assert services.recommend.catalogue.user_index(user) is not None  # the new events were learned
    body = c.post("/recommend", json={"user_id": user, "k": 5}).json()
    assert body["cold_start"] is False and not set(played) & set(_ids(body))
    # items added before training survive it (they are in the graph); a deleted one stays deleted
    assert services.recommend.catalogue.item_index("item:cold-doom") is not None


def test_a_model_without_its_graph_seeds_the_graph_on_the_first_edit(api: dict[str, Any], tmp_path: Path) -> None:
    """A model trained before catalogues lived in graphs: the first edit must not leave a one-item graph."""
    from types import SimpleNamespace

    from apps.recommend.catalogue_admin import CatalogueAdmin
    from apps.recommend.cold_start import NewItem
    from apps.recommend.interactions import InteractionLog
    from kg.registry import GraphRegistry

    services = api["services"]
    served = services.recommend
    fake = SimpleNamespace(recommend=served.rebuilt(served.rec, set()), settings=services.settings, components={})
    with GraphRegistry(tmp_path / "graphs") as graphs, InteractionLog(f"sqlite:///{tmp_path / 's.sqlite'}") as log:
        admin = CatalogueAdmin(fake, "synthetic", graphs, log, services.embedder, tmp_path)
        assert admin.reconcile(fake.recommend).catalogue.n_items == served.catalogue.n_items  # no graph: as trained
        admin.upsert_items([NewItem("item:seeded", "Seeded", ["jazz"])])
        store = graphs.get("recommend-synthetic")
        assert store.stats().entity_types["Item"] == served.catalogue.n_items + 1
        assert log.count("synthetic") == len(served.catalogue.interactions)
        again = admin.reconcile(fake.recommend.rebuilt(served.rec, set()))
        assert not again.hidden_ids and again.catalogue.item_index("item:seeded") is not None


def test_a_second_replica_on_the_same_database_follows_edits_and_retraining(api: dict[str, Any]) -> None:
    """Replica B (its own service objects, the same graph and database) picks up A's edits by polling."""
    from types import SimpleNamespace

    from apps.recommend.catalogue_admin import CatalogueAdmin
    from apps.recommend.interactions import InteractionLog

    c, services = api["client"], api["services"]
    a = services.recommend_admin
    b_services = SimpleNamespace(recommend=services.recommend.rebuilt(services.recommend.rec, set()),
                                 settings=services.settings, components={})  # fmt: skip
    with InteractionLog(services.settings.db_url) as log:
        b = CatalogueAdmin(b_services, "synthetic", services.graphs, log, services.embedder, api["home"], a.fit)
        b_services.recommend = b.reconcile(b_services.recommend)
        assert not b.sync()  # nothing changed yet
        r = _items(c, {"item_id": "item:replica", "name": "Replica Song", "tags": ["jazz"]})
        assert r.status_code == 200
        assert b_services.recommend.catalogue.item_index("item:replica") is None
        assert b.sync() and b_services.recommend.catalogue.item_index("item:replica") is not None
        assert c.delete("/admin/recommend/items/item:replica").status_code == 204
        assert b.sync() and "item:replica" in b_services.recommend.hidden_ids
        version = b_services.recommend.model_info["version"]
        events = [{"user_id": "user:replica", "item_id": x, "event_id": f"rep-{x}"}
                  for x in services.recommend.catalogue.item_ids[100:110]]  # fmt: skip
        assert c.post("/admin/recommend/interactions", json={"interactions": events}).status_code == 200
        job = c.post("/admin/recommend/train").json()["job_id"]
        a.jobs.wait(300)
        assert c.get(f"/admin/recommend/train/{job}").json()["status"] == "succeeded"
        assert b.sync() and b_services.recommend.model_info["version"] != version
        assert b_services.recommend.model_info == services.recommend.model_info
        assert not b.sync()
