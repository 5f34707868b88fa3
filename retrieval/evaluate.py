"""Ranking metrics with binary relevance: recall@k (hit rate), MRR@k, nDCG@k.

``recall_at_k`` is the *success* form: 1 when at least one relevant item is in
the top ``k``. With "relevant = every document of the query's intent" (hundreds
per intent) the set-recall form could never exceed k/|relevant|, so the hit rate
is the meaningful number; ``set_recall_at_k`` gives the other form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence

__all__ = ["evaluate_rankings", "mrr_at_k", "ndcg_at_k", "recall_at_k", "set_recall_at_k"]


def recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """1.0 when any of the first ``k`` items is relevant, else 0.0.

    Args:
        ranked: Retrieved items, best first.
        relevant: The relevant items.
        k: Cut-off.

    Returns:
        0.0 or 1.0.
    """
    return 1.0 if any(x in relevant for x in ranked[:k]) else 0.0


def set_recall_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Fraction of the relevant items found in the first ``k`` (0 when nothing is relevant)."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Reciprocal rank of the first relevant item within the first ``k`` (0 when none)."""
    for i, x in enumerate(ranked[:k], start=1):
        if x in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at_k(ranked: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> float:
    """Binary-relevance nDCG@k: ``DCG / IDCG`` with gains ``1/log2(rank+1)``.

    Args:
        ranked: Retrieved items, best first.
        relevant: The relevant items (the ideal ranking puts ``min(k, |relevant|)`` of them first).
        k: Cut-off.

    Returns:
        A value in [0, 1] (0 when nothing is relevant).
    """
    dcg = sum(1.0 / math.log2(i + 1) for i, x in enumerate(ranked[:k], start=1) if x in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal if ideal else 0.0


def evaluate_rankings(
    runs: Sequence[tuple[Sequence[Hashable], Collection[Hashable]]],
    metrics: Mapping[str, tuple[Callable[[Sequence[Hashable], Collection[Hashable], int], float], int]] | None = None,
) -> dict[str, float]:
    """Average metrics over queries.

    Args:
        runs: One ``(ranked, relevant)`` pair per query.
        metrics: ``{name: (metric_fn, k)}``; default R@1, R@5, MRR@10, nDCG@10.

    Returns:
        ``{name: mean value}`` (0.0 for every metric when ``runs`` is empty).
    """
    metrics = metrics or {
        "R@1": (recall_at_k, 1),
        "R@5": (recall_at_k, 5),
        "MRR@10": (mrr_at_k, 10),
        "nDCG@10": (ndcg_at_k, 10),
    }
    n = len(runs)
    return {name: (sum(fn(r, rel, k) for r, rel in runs) / n if n else 0.0) for name, (fn, k) in metrics.items()}
