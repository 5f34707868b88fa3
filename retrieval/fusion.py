"""Rank fusion: reciprocal-rank fusion and weighted (min-max normalised) score fusion.

Both take several rankings of the same kind of item (``[(item, score), ...]``, best
first) and return one fused ranking, best first, ties broken by first appearance.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from kgnlp.errors import ConfigurationError

__all__ = ["Ranking", "minmax", "rrf", "weighted"]

T = TypeVar("T", bound=Hashable)
Ranking = Sequence[tuple[T, float]]


def _weights(names: Sequence[str], weights: Mapping[str, float] | None) -> list[float]:
    if weights is None:
        return [1.0] * len(names)
    unknown = set(weights) - set(names)
    if unknown:
        raise ConfigurationError(f"fusion weights name unknown rankings {sorted(unknown)}; have {list(names)}")
    out = [float(weights.get(n, 0.0)) for n in names]
    if any(w < 0 for w in out):
        raise ConfigurationError(f"fusion weights must be >= 0, got {dict(weights)}")
    return out


def _order(scores: dict[T, float], first: dict[T, int]) -> list[tuple[T, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], first[kv[0]]))


def rrf(
    rankings: Mapping[str, Ranking[T]],
    *,
    k: float = 60.0,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[T, float]]:
    """Reciprocal-rank fusion: ``score(d) = Σ_r w_r / (k + rank_r(d))`` with 1-based ranks.

    Args:
        rankings: Named rankings, each best first (their scores are ignored).
        k: The RRF constant (60 in Cormack et al. 2009); smaller values favour top ranks.
        weights: Optional weight per ranking name (default 1 each).

    Returns:
        The fused ranking ``[(item, fused_score), ...]``, best first.
    """
    if k < 0:
        raise ConfigurationError(f"rrf k must be >= 0, got {k!r}")
    names = list(rankings)
    ws = _weights(names, weights)
    scores: dict[T, float] = {}
    first: dict[T, int] = {}
    n = 0
    for name, w in zip(names, ws, strict=True):
        for rank, (item, _s) in enumerate(rankings[name], start=1):
            scores[item] = scores.get(item, 0.0) + w / (k + rank)
            if item not in first:
                first[item] = n
                n += 1
    return _order(scores, first)


def minmax(ranking: Ranking[T]) -> list[tuple[T, float]]:
    """Scale scores to [0, 1] (all 1.0 when they are equal).

    Args:
        ranking: ``[(item, score), ...]``.

    Returns:
        The same items with scaled scores.
    """
    if not ranking:
        return []
    vals = [s for _, s in ranking]
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return [(i, 1.0) for i, _ in ranking]
    return [(i, (s - lo) / (hi - lo)) for i, s in ranking]


def weighted(
    rankings: Mapping[str, Ranking[T]],
    *,
    weights: Mapping[str, float] | None = None,
) -> list[tuple[T, float]]:
    """Weighted score fusion: ``score(d) = Σ_r w_r · minmax_r(d)`` (missing items count 0).

    Args:
        rankings: Named rankings with raw scores, best first.
        weights: Optional weight per ranking name (default 1 each).

    Returns:
        The fused ranking ``[(item, fused_score), ...]``, best first.
    """
    names = list(rankings)
    ws = _weights(names, weights)
    scores: dict[T, float] = {}
    first: dict[T, int] = {}
    n = 0
    for name, w in zip(names, ws, strict=True):
        for item, s in minmax(rankings[name]):
            scores[item] = scores.get(item, 0.0) + w * s
            if item not in first:
                first[item] = n
                n += 1
    return _order(scores, first)
