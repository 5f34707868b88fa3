"""Splits, metrics, explanations, fold-in and persistence of the recommend app (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.recommend.data import Catalogue
from apps.recommend.explain import Explainer, relation_phrase
from apps.recommend.metrics import auc, f1, ndcg_at_k, rank_metrics, recall_at_k
from apps.recommend.models.embedding import EmbeddingModel
from apps.recommend.ranker import LogisticRanker
from apps.recommend.splits import kgcn_split, per_user_split
from apps.recommend.synthetic import synthetic_catalogue


@pytest.fixture(scope="module")
def cat() -> Catalogue:
    return synthetic_catalogue(n_users=120, n_items=200, seed=3)


# -- metrics on hand-computed cases -------------------------------------------------------------


def test_auc_hand_computed() -> None:
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1) -> 3/4
    assert auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.5, 0.1])) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half: (1 + 0.5) / 2
    assert auc(np.array([1, 0, 1, 0]), np.array([0.7, 0.7, 0.9, 0.1])) == pytest.approx(0.875)
    assert auc(np.array([1, 1]), np.array([0.1, 0.2])) == 0.5


def test_f1_hand_computed() -> None:
    # tp=2, fp=1, fn=1 -> precision 2/3, recall 2/3, F1 2/3
    assert f1(np.array([1, 1, 1, 0, 0]), np.array([1, 1, 0, 1, 0])) == pytest.approx(2 / 3)
    assert f1(np.array([1, 0]), np.array([0, 0])) == 0.0


def test_recall_and_ndcg_hand_computed() -> None:
    ranked = [5, 3, 9, 1]
    assert recall_at_k(ranked, {3, 1, 7}, 2) == pytest.approx(1 / 3)
    # hits at ranks 2 and 4: (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3) + 1/log2(4)) for 3 relevant, k=4
    expected = (1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3) + 1 / np.log2(4))
    assert ndcg_at_k(ranked, {3, 1, 7}, 4) == pytest.approx(expected)
    assert ndcg_at_k([1, 2], {1}, 2) == pytest.approx(1.0)
    m = rank_metrics(np.array([[1, 2], [3, 4]]), [{2}, set()], 2)
    assert m["users"] == 1 and m["recall"] == 1.0 and m["ndcg"] == pytest.approx(1 / np.log2(3))


# -- leakage-free splits ----------------------------------------------------------------------


def _check_kgcn_split(cat: Catalogue) -> None:
    split = kgcn_split(cat.interactions, cat.n_items, seed=1)
    keys = [set(map(tuple, part[:, :2].tolist())) for part in (split.train, split.valid, split.test)]
    assert not keys[0] & keys[2] and not keys[1] & keys[2] and not keys[0] & keys[1]
    positives = cat.interactions.pairs()
    for part in (split.train, split.valid, split.test):
        labels = np.array([(u, i) in positives for u, i in part[:, :2].tolist()])
        assert (labels == part[:, 2].astype(bool)).all()  # negatives are never played items
    n = len(split.train) + len(split.valid) + len(split.test)
    assert n == 2 * len(positives)
    assert len(split.test) == pytest.approx(0.2 * n, abs=1) and len(split.valid) == pytest.approx(0.2 * n, abs=1)
    train_pos = split.train_positives().pairs()
    assert not train_pos & keys[2]
    again = kgcn_split(cat.interactions, cat.n_items, seed=1)
    assert np.array_equal(again.test, split.test)


def _check_topk_split(cat: Catalogue) -> None:
    split = per_user_split(cat.interactions, seed=2)
    tr, va, te = split.train.pairs(), split.valid.pairs(), split.test.pairs()
    assert not tr & te and not va & te and not tr & va
    assert tr | va | te == cat.interactions.pairs()
    by_user = split.test.by_user(cat.n_users)
    counts = np.bincount(np.unique(np.stack([cat.interactions.users, cat.interactions.items], 1), axis=0)[:, 0],
                         minlength=cat.n_users)  # fmt: skip
    assert all(len(by_user[u]) >= 1 for u in range(cat.n_users) if counts[u] >= 3)


def test_splits_are_leakage_free_on_synthetic(cat: Catalogue) -> None:
    _check_kgcn_split(cat)
    _check_topk_split(cat)


def test_splits_are_leakage_free_on_lastfm(shared_data: Path) -> None:
    from apps.recommend.lastfm import load_lastfm

    lfm = load_lastfm(shared_data)
    # KGCN's statistics: 1,872 users, 3,846 items, 9,366 KG entities (+ tags), 21,173 plays
    assert (lfm.n_users, lfm.n_items, len(lfm.interactions)) == (1872, 3846, 21173)
    assert sum(1 for e in lfm.entity_ids if e.startswith("music:")) == 9366
    _check_kgcn_split(lfm)
    _check_topk_split(lfm)


# -- explanations --------------------------------------------------------------------------------


def test_explanation_paths_exist_in_the_graph(cat: Catalogue) -> None:
    item_users: list[set[int]] = [set() for _ in range(cat.n_items)]
    for u, i in zip(cat.interactions.users.tolist(), cat.interactions.items.tolist(), strict=True):
        item_users[i].add(u)
    ex = Explainer(cat, item_users)
    edges = {(cat.entity_ids[h], cat.relations[r], cat.entity_ids[t]) for h, r, t in cat.triples.tolist()}
    history = cat.interactions.by_user(cat.n_users)[0]
    kinds = set()
    for item in range(cat.n_items):
        if item in set(history.tolist()):
            continue
        e = ex.explain(item, history)
        kinds.add(e.kind)
        if e.kind == "kg_path":
            h, mid, i = e.path
            assert h.id in {cat.item_ids[x] for x in history.tolist()} and i.id == cat.item_ids[item]
            assert (h.id, h.relation, mid.id) in edges and (i.id, mid.relation, mid.id) in edges
            assert cat.item_names[int(h.id.split(":")[1])] in e.text and mid.name in e.text
    assert "kg_path" in kinds


def test_relation_phrase() -> None:
    assert relation_phrase("music.artist.origin") == "origin"
    assert relation_phrase("has_tag") == "tag"


# -- fold-in, ranker, persistence ------------------------------------------------------------------


def test_fold_in_recovers_the_direction_of_a_user() -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(300, 16)).astype(np.float32)
    true_u = rng.normal(size=16).astype(np.float32)
    liked = np.argsort(-(items @ true_u))[:30]
    m = EmbeddingModel("x", np.zeros((1, 16), np.float32), items)
    u = m.fold_in(liked)
    top = set(np.argsort(-(items @ u))[:30].tolist())
    assert len(top & set(liked.tolist())) >= 20
    assert not m.fold_in(np.zeros(0, np.int64)).any()


def test_ranker_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=400) > 0).astype(int)
    r = LogisticRanker.fit(["a", "b", "c"], x, y)
    assert r.weights[0] > 0 > r.weights[2]
    r.save(tmp_path / "r.json")
    r2 = LogisticRanker.load(tmp_path / "r.json")
    assert np.allclose(r.proba(x), r2.proba(x))


def test_catalogue_roundtrip_and_determinism(cat: Catalogue, tmp_path: Path) -> None:
    cat.save(tmp_path)
    back = Catalogue.load(tmp_path)
    assert back.item_ids == cat.item_ids and back.item_tags == cat.item_tags
    assert np.array_equal(back.triples, cat.triples) and np.array_equal(back.interactions.items, cat.interactions.items)
    again = synthetic_catalogue(n_users=120, n_items=200, seed=3)
    assert np.array_equal(again.interactions.items, cat.interactions.items)
    cold = cat.meta["cold_items"]
    assert cold and cat.item_counts()[cold].sum() == 0  # new releases nobody played


def test_feedback_plays_feed_the_next_training_run(cat: Catalogue) -> None:
    from apps.recommend.setup import merge_feedback

    events = [("user:3", "item:5", 86400.0), ("user:new", "item:7", 0.0), ("user:new", "item:unknown", 0.0)]
    merged = merge_feedback(cat, events)
    assert merged.n_users == cat.n_users + 1 and merged.user_ids[-1] == "user:new"
    assert len(merged.interactions) == len(cat.interactions) + 2  # the unknown item is dropped
    assert (3, 5) in merged.interactions.pairs() and (cat.n_users, 7) in merged.interactions.pairs()
    assert merge_feedback(cat, []) is cat


@pytest.mark.slow  # ~5 s idle, ~15 s on the shared 2-core machine
def test_offline_evaluation_runs_every_model_on_a_tiny_catalogue() -> None:
    from apps.recommend.evaluate import MODELS, evaluate_ctr, evaluate_topk
    from apps.recommend.train import FitConfig

    small = synthetic_catalogue(n_users=60, n_items=80, seed=5)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(small.n_items, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    cfg = FitConfig(dim=16).scaled(0.25)
    ctr = evaluate_ctr(small, text, cfg, report=lambda _: None)
    topk = evaluate_topk(small, text, cfg, k=10, report=lambda _: None)
    assert set(ctr["models"]) == set(MODELS) == set(topk["models"])
    for m in ctr["models"].values():
        assert 0.0 <= m["auc"] <= 1.0 and 0.0 <= m["f1"] <= 1.0
    for m in topk["models"].values():
        assert 0.0 <= m["recall"] <= 1.0 and 0.0 <= m["ndcg"] <= 1.0
    # the synthetic plays follow genre taste: LightGCN must beat chance (AUC 0.5) clearly
    assert ctr["models"]["lightgcn"]["auc"] > 0.6 and ctr["models"]["ranker"]["auc"] > 0.6


def test_fit_seed_varies_every_model(cat: Catalogue) -> None:
    from apps.recommend.train import FitConfig, fit_base

    rng = np.random.default_rng(0)
    text = rng.normal(size=(cat.n_items, 8)).astype(np.float32)
    runs = [fit_base(cat, cat.interactions, text, FitConfig(dim=8, seed=s).scaled(0.05), report=lambda _: None)
            for s in (0, 0, 1)]  # fmt: skip
    for name in ("bpr", "lightgcn", "kg", "text_tower"):
        a, b, c = (r.models[name].items for r in runs)
        np.testing.assert_array_equal(a, b)  # one seed, one result
        assert not np.allclose(a, c), name  # another seed, other vectors (was: only BPR-MF changed)
