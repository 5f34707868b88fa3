"""Offline evaluation: the KGCN CTR protocol (AUC/F1) and top-K ranking over all items (Recall/NDCG@K)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from apps.recommend.data import Catalogue
from apps.recommend.metrics import auc, f1, rank_metrics
from apps.recommend.recommender import FEATURES, Recommender, UserContext
from apps.recommend.splits import kgcn_split, per_user_split
from apps.recommend.train import (
    FitConfig,
    contexts_for,
    fit_base,
    fit_ranker_labeled,
    fit_ranker_topk,
    labeled_features,
)

__all__ = ["MODELS", "evaluate_ctr", "evaluate_topk", "topk_lists"]

log = logging.getLogger("kgnlp.recommend")

MODELS = ["popularity", "bpr", "lightgcn", "kg", "text_tower", "text_sim", "ranker"]


def evaluate_ctr(catalogue: Catalogue, text: np.ndarray, cfg: FitConfig, seed: int = 555,
                 report: Callable[[str], None] = log.info) -> dict[str, Any]:  # fmt: skip
    """KGCN's protocol: AUC and F1 on the test rows for every model.

    Single models are turned into probabilities by a one-feature logistic fit on the validation
    rows (their F1 threshold); the ranker combines all features, fitted on the same rows.

    Returns:
        ``{"rows": {...}, "models": {name: {"auc", "f1"}}, "train_s": ...}``.
    """
    split = kgcn_split(catalogue.interactions, catalogue.n_items, seed=seed)
    train = split.train_positives()
    t0 = time.perf_counter()
    rec = fit_base(catalogue, train, text, cfg, report)
    ctxs = contexts_for(rec, train)
    fit_ranker_labeled(rec, ctxs, split.valid)
    train_s = time.perf_counter() - t0
    xv, xt = labeled_features(rec, ctxs, split.valid), labeled_features(rec, ctxs, split.test)
    yt = split.test[:, 2]
    out: dict[str, dict[str, float]] = {}
    from apps.recommend.ranker import LogisticRanker

    for name in MODELS:
        if name == "ranker":
            assert rec.ranker is not None
            p = rec.ranker.proba(xt)
        else:
            k = FEATURES.index(name)
            one = LogisticRanker.fit([name], xv[:, [k]], split.valid[:, 2])
            p = one.proba(xt[:, [k]])
        out[name] = {"auc": auc(yt, p), "f1": f1(yt, p >= 0.5)}
        report(f"ctr {name}: AUC={out[name]['auc']:.4f} F1={out[name]['f1']:.4f}")
    assert rec.ranker is not None
    return {
        "rows": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        "models": out,
        "ranker_weights": dict(zip(FEATURES, rec.ranker.weights.round(3).tolist(), strict=True)),
        "train_s": round(train_s, 1),
        "model_seconds": {n: m.info.get("seconds") for n, m in rec.models.items()},
    }


def topk_lists(rec: Recommender, ctxs: list[UserContext], model: str, users: list[int], exclude: list[set[int]],
               k: int) -> np.ndarray:  # fmt: skip
    """Top-``k`` item indices per user by one model, excluding each user's ``exclude`` items."""
    out = np.zeros((len(users), k), np.int64)
    for s in range(0, len(users), 128):
        batch = users[s : s + 128]
        sc = rec.model_scores(model, [ctxs[u] for u in batch]).copy()
        for r, u in enumerate(batch):
            if exclude[u]:
                sc[r, list(exclude[u])] = -np.inf
        part = np.argpartition(-sc, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1, kind="stable")
        out[s : s + len(batch)] = np.take_along_axis(part, order, 1)
    return out


def evaluate_topk(catalogue: Catalogue, text: np.ndarray, cfg: FitConfig, k: int = 20, seed: int = 0,
                  cold_max: int = 2, report: Callable[[str], None] = log.info,
                  keep: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Leave-out top-K: per-user 60/20/20 split, rank all items not seen in train/valid.

    The cold-start slice keeps only test items with ≤ ``cold_max`` training interactions
    (users without such items are left out of it).

    Args:
        keep: when given, receives the fitted ``recommender`` (e.g. to measure serving latency).

    Returns:
        ``{"models": {name: {"recall", "ndcg", "cold_recall", "cold_ndcg"}}, "users", "cold_users", ...}``.
    """
    split = per_user_split(catalogue.interactions, seed=seed)
    nu = catalogue.n_users
    t0 = time.perf_counter()
    rec = fit_base(catalogue, split.train, text, cfg, report)
    ctxs = contexts_for(rec, split.train)
    fit_ranker_topk(rec, ctxs, split.valid, seed=seed)
    train_s = time.perf_counter() - t0
    if keep is not None:
        keep["recommender"] = rec
    counts = catalogue.item_counts(split.train)
    train_h, valid_h, test_h = (x.by_user(nu) for x in (split.train, split.valid, split.test))
    users = [u for u in range(nu) if len(test_h[u])]
    exclude = [set(train_h[u].tolist()) | set(valid_h[u].tolist()) for u in range(nu)]
    relevant = [set(test_h[u].tolist()) for u in users]
    cold = [{i for i in r if counts[i] <= cold_max} for r in relevant]
    out: dict[str, dict[str, float]] = {}
    for name in MODELS:
        lists = topk_lists(rec, ctxs, name, users, exclude, k)
        m, c = rank_metrics(lists, relevant, k), rank_metrics(lists, cold, k)
        out[name] = {"recall": m["recall"], "ndcg": m["ndcg"], "cold_recall": c["recall"], "cold_ndcg": c["ndcg"]}
        report(f"top{k} {name}: R={m['recall']:.4f} NDCG={m['ndcg']:.4f} cold R={c['recall']:.4f} NDCG={c['ndcg']:.4f}")
    return {
        "models": out,
        "users": len(users),
        "cold_users": sum(1 for c in cold if c),
        "train_s": round(train_s, 1),
        "model_seconds": {n: m.info.get("seconds") for n, m in rec.models.items()},
    }
