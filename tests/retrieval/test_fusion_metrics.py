"""Fusion maths and ranking metrics on hand-made cases."""

from __future__ import annotations

import math

import pytest

from kgnlp.errors import ConfigurationError
from retrieval.evaluate import evaluate_rankings, mrr_at_k, ndcg_at_k, recall_at_k, set_recall_at_k
from retrieval.fusion import minmax, rrf, weighted


def test_rrf_matches_hand_computation() -> None:
    a = [("x", 9.0), ("y", 5.0), ("z", 1.0)]
    b = [("y", 0.9), ("w", 0.8)]
    out = dict(rrf({"a": a, "b": b}, k=60))
    assert out["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert out["x"] == pytest.approx(1 / 61)
    assert out["w"] == pytest.approx(1 / 62)
    assert out["z"] == pytest.approx(1 / 63)
    assert [i for i, _ in rrf({"a": a, "b": b}, k=60)] == ["y", "x", "w", "z"]


def test_rrf_weights_and_ties() -> None:
    a = [("x", 1.0)]
    b = [("y", 1.0)]
    # equal scores: first appearance wins
    assert [i for i, _ in rrf({"a": a, "b": b})] == ["x", "y"]
    assert [i for i, _ in rrf({"a": a, "b": b}, weights={"a": 1.0, "b": 2.0})] == ["y", "x"]
    assert dict(rrf({"a": a, "b": b}, k=0, weights={"b": 2.0}))["x"] == 0.0
    with pytest.raises(ConfigurationError):
        rrf({"a": a}, weights={"nope": 1.0})
    with pytest.raises(ConfigurationError):
        rrf({"a": a}, k=-1)


def test_weighted_fusion_minmax() -> None:
    assert minmax([("a", 3.0), ("b", 2.0), ("c", 1.0)]) == [("a", 1.0), ("b", 0.5), ("c", 0.0)]
    assert minmax([("a", 2.0), ("b", 2.0)]) == [("a", 1.0), ("b", 1.0)]
    assert minmax([]) == []
    dense = [("a", 0.9), ("b", 0.7), ("c", 0.5)]  # → 1, .5, 0
    lex = [("c", 12.0), ("b", 10.0), ("d", 2.0)]  # → 1, .8, 0
    out = dict(weighted({"dense": dense, "lexical": lex}, weights={"dense": 2.0, "lexical": 1.0}))
    assert out["a"] == pytest.approx(2.0)
    assert out["b"] == pytest.approx(2 * 0.5 + 0.8)
    assert out["c"] == pytest.approx(1.0)
    assert out["d"] == pytest.approx(0.0)


def test_metrics_hand_computed() -> None:
    ranked = ["n1", "r1", "n2", "r2"]
    rel = {"r1", "r2", "r3"}
    assert recall_at_k(ranked, rel, 1) == 0.0
    assert recall_at_k(ranked, rel, 2) == 1.0
    assert set_recall_at_k(ranked, rel, 4) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, rel, 10) == 0.5
    assert mrr_at_k(ranked, rel, 1) == 0.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, rel, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(["r1"], {"r1"}, 10) == 1.0
    assert ndcg_at_k(ranked, set(), 10) == 0.0
    m = evaluate_rankings([(["a"], {"a"}), (["b", "a"], {"a"})])
    assert m == {"R@1": 0.5, "R@5": 1.0, "MRR@10": 0.75, "nDCG@10": pytest.approx((1 + 1 / math.log2(3)) / 2)}
    assert evaluate_rankings([])["R@1"] == 0.0
