"""Metrics: AUC and F1 for labelled rows, Recall@K and NDCG@K for top-K lists."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["auc", "f1", "ndcg_at_k", "rank_metrics", "recall_at_k"]


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney; tied scores count one half).

    Args:
        labels: 0/1 labels.
        scores: real scores, higher = more likely positive.

    Returns:
        AUC in [0, 1]; 0.5 when only one class is present.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), np.float64)
    # average ranks (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends, strict=True):
        ranks[a:b] = (a + 1 + b) / 2
    r = np.empty_like(ranks)
    r[order] = ranks
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1(labels: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of the positive class for 0/1 predictions (0 when nothing is predicted or present)."""
    y, p = np.asarray(labels).astype(bool), np.asarray(predicted).astype(bool)
    tp = int((y & p).sum())
    if tp == 0:
        return 0.0
    precision, recall = tp / int(p.sum()), tp / int(y.sum())
    return 2 * precision * recall / (precision + recall)


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Share of ``relevant`` found in the first ``k`` of ``ranked`` (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(list(ranked)[:k]) & relevant) / len(relevant)


def ndcg_at_k(ranked: Sequence[int], relevant: set[int], k: int) -> float:
    """Binary NDCG@k: DCG of the list over the DCG of an ideal list (``min(k, |relevant|)`` hits)."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(list(ranked)[:k]) if i in relevant)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(k, len(relevant))))
    return float(dcg / idcg)


def rank_metrics(topk: np.ndarray, relevant: list[set[int]], k: int) -> dict[str, float]:
    """Mean Recall@k and NDCG@k over users that have relevant items.

    Args:
        topk: ``(n_users, >=k)`` ranked item indices.
        relevant: per user the held-out items.
        k: cut-off.

    Returns:
        ``{"recall", "ndcg", "users"}``.
    """
    rec, nd = [], []
    for row, rel in zip(topk, relevant, strict=True):
        if rel:
            rec.append(recall_at_k(row.tolist(), rel, k))
            nd.append(ndcg_at_k(row.tolist(), rel, k))
    return {"recall": float(np.mean(rec)) if rec else 0.0, "ndcg": float(np.mean(nd)) if nd else 0.0, "users": len(rec)}
