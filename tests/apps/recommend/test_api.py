"""The recommend API over real HTTP: a small real model (PyG models + MiniLM text) behind a LiveServer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture(scope="module")
def api(model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from apps.core.services import Services
    from apps.core.settings import load_settings
    from apps.main import create_app
    from apps.recommend.service import load
    from apps.recommend.setup import train_model
    from apps.recommend.train import FitConfig
    from models.loading import load_sentence_embedder

    home = tmp_path_factory.mktemp("rechome")
    embedder = load_sentence_embedder(model_home / "models" / "all-minilm-l6-v2")
    info = train_model(home, "synthetic", embedder, cfg=FitConfig(dim=32).scaled(0.1))
    assert info["status"] == "trained"
    settings = load_settings(home=home, database_url=f"sqlite:///{home / 'state.sqlite'}")
    services = Services(settings=settings)
    services.components["recommend"] = load(settings, services)
    assert services.components["recommend"].status == "ready"
    with LiveServer(create_app(settings, services=services)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        yield {"client": c, "svc": services.recommend, "home": home, "info": info}
    services.close()


def _rec(c: httpx.Client, **body: Any) -> httpx.Response:
    return c.post("/recommend", json=body)


def test_known_user_gets_k_unseen_items_with_explanations(api: dict[str, Any]) -> None:
    c, svc = api["client"], api["svc"]
    r = _rec(c, user_id="user:0", k=20)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cold_start"] is False and len(body["items"]) == 20
    seen = {svc.catalogue.item_ids[i] for i in svc.history[svc.catalogue.user_index("user:0")].tolist()}
    ids = [x["item_id"] for x in body["items"]]
    assert not seen & set(ids) and len(set(ids)) == 20
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    edges = {(svc.catalogue.entity_ids[h], svc.catalogue.relations[r_], svc.catalogue.entity_ids[t])
             for h, r_, t in svc.catalogue.triples.tolist()}  # fmt: skip
    kg = [x["explanation"] for x in body["items"] if x["explanation"]["kind"] == "kg_path"]
    assert kg, "no KG explanation in 20 items"
    for e in kg:
        a, mid, b = e["path"]
        assert a["id"] in seen and (a["id"], a["relation"], mid["id"]) in edges
        assert (b["id"], mid["relation"], mid["id"]) in edges and e["text"].startswith("Because you played")
    with_seen = _rec(c, user_id="user:0", k=100, exclude_seen=False).json()["items"]
    assert seen & {x["item_id"] for x in with_seen}


def test_anonymous_recent_items_and_filters(api: dict[str, Any]) -> None:
    c, svc = api["client"], api["svc"]
    cat = svc.catalogue
    metal = [cat.item_ids[i] for i, t in enumerate(cat.item_tags) if "doom metal" in t][:4]
    body = _rec(c, recent_items=metal, k=10).json()
    assert body["user_id"] is None and body["cold_start"] is False and body["history_size"] == len(metal)
    assert not set(metal) & {x["item_id"] for x in body["items"]}
    filt = _rec(c, recent_items=metal, k=5, filters={"tags": ["jazz"], "exclude_items": [metal[0]]}).json()
    assert filt["items"] and all("jazz" in x["tags"] for x in filt["items"])


def test_unknown_user_gets_a_cold_start_list_and_bad_input_a_clear_4xx(api: dict[str, Any]) -> None:
    c = api["client"]
    body = _rec(c, user_id="user:nobody", k=5).json()
    assert body["cold_start"] is True and len(body["items"]) == 5
    r = _rec(c, recent_items=["item:does-not-exist"])
    assert r.status_code == 404 and "item:does-not-exist" in r.json()["error"]["message"]
    assert _rec(c, user_id="user:0", k=0).status_code == 422
    assert _rec(c, user_id="user:0", k=101).status_code == 422
    r = _rec(c, k=5)
    assert r.status_code == 422 and "user_id or recent_items" in r.json()["error"]["message"]
    assert c.get("/items/item:nope/similar").status_code == 404
    assert (
        c.post("/feedback", json={"events": [{"user_id": "u1", "item_id": "item:nope", "event": "play"}]}).status_code
        == 404
    )
    assert c.post("/feedback", json={"events": []}).status_code == 422


def test_similar_items(api: dict[str, Any]) -> None:
    c, svc = api["client"], api["svc"]
    r = c.get("/items/item:0/similar", params={"k": 10})
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) == 10 and "item:0" not in {x["item_id"] for x in items}
    genre = svc.catalogue.item_tags[0][0]
    same = sum(genre in x["tags"] for x in items)
    share = sum(genre in t for t in svc.catalogue.item_tags) / svc.catalogue.n_items
    assert same / 10 > share  # neighbours share the genre more often than chance


def test_feedback_changes_the_next_recommendation(api: dict[str, Any]) -> None:
    c, svc = api["client"], api["svc"]
    cat = svc.catalogue
    user = "user:5"
    before = _rec(c, user_id=user, k=100).json()["items"]
    history = svc.history[cat.user_index(user)]
    history_genres = {cat.item_tags[i][0] for i in history.tolist()}
    genre = next(g for g in ("jazz", "classical", "techno", "folk", "soul", "hip hop") if g not in history_genres)
    new = [cat.item_ids[i] for i, t in enumerate(cat.item_tags) if t[0] == genre][:6]
    events = [{"user_id": user, "item_id": x, "event": "play", "event_id": f"t-{x}"} for x in new]
    r = c.post("/feedback", json={"events": events})
    assert r.status_code == 200 and r.json() == {"accepted": 6, "duplicates": 0}
    assert c.post("/feedback", json={"events": events}).json() == {"accepted": 0, "duplicates": 6}  # idempotent
    after = _rec(c, user_id=user, k=100).json()
    ids_after = [x["item_id"] for x in after["items"]]
    assert not set(new) & set(ids_after)  # just played: excluded as seen
    assert after["history_size"] == len(history) + 6
    assert ids_after != [x["item_id"] for x in before]

    def first(items: list[dict[str, Any]]) -> int:  # rank of the best unplayed item of the new genre
        return next((k for k, x in enumerate(items) if x["tags"][0] == genre and x["item_id"] not in new), 100)

    assert first(after["items"]) < first(before)  # the new taste moved up at once, without retraining
    skip = ids_after[0]
    c.post("/feedback", json={"events": [{"user_id": user, "item_id": skip, "event": "skip"}]})
    assert skip not in {x["item_id"] for x in _rec(c, user_id=user, k=20).json()["items"]}
    # a brand-new user becomes known through feedback alone
    c.post("/feedback", json={"events": [{"user_id": "user:new-1", "item_id": new[0], "event": "click"}]})
    assert _rec(c, user_id="user:new-1", k=5).json()["cold_start"] is False


def test_llm_explanations_fall_back_to_templates_without_the_adapter(api: dict[str, Any]) -> None:
    body = _rec(api["client"], user_id="user:1", k=3, explain="llm").json()
    assert body["explain"] == "llm" and body["fallback_reason"] == "no_adapter"
    assert all(x["explanation"]["text"] and not x["explanation"]["generated"] for x in body["items"])
    none = _rec(api["client"], user_id="user:1", k=3, explain="none").json()
    assert all(x["explanation"] is None for x in none["items"])


def test_setup_is_idempotent(api: dict[str, Any], model_home: Path) -> None:
    from apps.recommend.setup import train_model
    from apps.recommend.train import FitConfig

    again = train_model(api["home"], "synthetic", None, cfg=FitConfig(dim=32).scaled(0.1))
    assert again["status"] == "unchanged"


def test_load_reports_not_configured_with_a_hint(tmp_path: Path) -> None:
    from apps.core.services import Services
    from apps.core.settings import load_settings
    from apps.recommend.service import load

    settings = load_settings(home=tmp_path)
    services = Services(settings=settings)
    comp = load(settings, services)
    assert comp.status == "not_configured" and "kgnlp recommend setup" in comp.detail["hint"]
    assert services.recommend is None


class _FakeQueue:
    """Stands in for the GenerationQueue: the rewrite logic (timeout, fallback) is what is tested here."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[tuple[Any, str | None]] = []

    async def generate(self, messages: Any, params: Any, adapter: str | None = None) -> Any:
        import asyncio

        from models.generation import GenerationResult

        self.calls.append((messages, adapter))
        await asyncio.sleep(self.delay)
        return GenerationResult("You might enjoy this one for its dark post-punk sound.\nextra", "stop", 10, 12)


def test_llm_rewrite_uses_the_adapter_and_is_bounded(api: dict[str, Any]) -> None:
    import asyncio

    from apps.recommend.service import RecommendService

    svc = api["svc"]
    fast = _FakeQueue(0.0)
    s = RecommendService(svc.rec, svc.feedback, fast, "recommend", explain_timeout_s=2.0, llm_items=2)
    res = asyncio.run(s.recommend("user:2", [], 4, explain="llm"))
    assert res.fallback_reason is None and [r.generated for r in res.items] == [True, True, False, False]
    assert res.items[0].explanation is not None and res.items[0].explanation.text.startswith("You might enjoy")
    assert all(a == "recommend" for _, a in fast.calls) and len(fast.calls) == 2
    assert "Reason: " in fast.calls[0][0][-1].content  # the template facts are in the prompt
    slow = RecommendService(svc.rec, svc.feedback, _FakeQueue(5.0), "recommend", explain_timeout_s=0.2)
    t0 = time.perf_counter()
    res = asyncio.run(slow.recommend("user:2", [], 4, explain="llm"))
    assert time.perf_counter() - t0 < 3.0
    assert res.fallback_reason == "timeout" and not any(r.generated for r in res.items)
    assert all(r.explanation is not None and r.explanation.text for r in res.items)
