"""Filtered link-prediction evaluation, both directions, with realistic tie handling.

For every test triple ``(h, r, t)`` two queries are ranked against all entities:
``(h, r, ?)`` with answer ``t`` and ``(?, r, t)`` with answer ``h``. Other known
answers (from train + valid + test) are removed before ranking ("filtered
setting", Bordes et al. 2013). Ties are broken *realistically*: the rank is the
mean of the optimistic and the pessimistic rank,
``rank = 1 + #{score > true} + #{other entities with score == true} / 2``,
i.e. the expected rank under a random order of tied entities. A model that
gives every entity the same score therefore gets ``(N + 1) / 2``, not 1.
Hits@k counts ``rank <= k`` with that (possibly fractional) rank.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from kg.embeddings.models import KGEModel

__all__ = ["FilterIndex", "RankingMetrics", "evaluate", "filtered_ranks", "metrics_from_ranks"]


@dataclass(frozen=True, slots=True)
class RankingMetrics:
    """Link-prediction metrics over ``n`` ranked queries (both directions)."""

    mrr: float
    mr: float
    hits1: float
    hits3: float
    hits10: float
    n: int
    tail_mrr: float = float("nan")
    head_mrr: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def filtered_ranks(scores: Tensor, targets: Tensor, known: list[Tensor] | None = None) -> Tensor:
    """Realistic filtered ranks of the target entity in each row of ``scores``.

    Args:
        scores: ``(B, N)`` scores (higher is better).
        targets: ``(B,)`` index of the true answer per row.
        known: Per row, the indices of *all* true answers of that query (the
            target may be included; it is never filtered). ``None``: raw ranking.

    Returns:
        ``(B,)`` float ranks, 1 = best.
    """
    scores = scores.clone().float()
    rows = torch.arange(scores.shape[0])
    true = scores[rows, targets]
    if known:
        r_idx = torch.cat([torch.full((len(k),), i, dtype=torch.long) for i, k in enumerate(known)])
        c_idx = torch.cat([k.long() for k in known])
        scores[r_idx, c_idx] = float("-inf")
    scores[rows, targets] = true
    true = true.unsqueeze(1)
    greater = (scores > true).sum(1)
    equal = (scores == true).sum(1) - 1  # minus the target itself
    nan = torch.isnan(true.squeeze(1))  # a NaN score is ranked last
    ranks = 1.0 + greater.float() + equal.float() / 2.0
    return torch.where(nan, torch.full_like(ranks, float(scores.shape[1])), ranks)


def metrics_from_ranks(
    ranks: Tensor, tail_ranks: Tensor | None = None, head_ranks: Tensor | None = None
) -> RankingMetrics:
    """Aggregate ranks into MRR, MR and Hits@1/3/10.

    Args:
        ranks: All ranks.
        tail_ranks: Ranks of tail queries (for the per-direction MRR).
        head_ranks: Ranks of head queries.

    Returns:
        The metrics.
    """
    r = ranks.double()
    if r.numel() == 0:
        nan = float("nan")
        return RankingMetrics(nan, nan, nan, nan, nan, 0)
    return RankingMetrics(
        mrr=float((1.0 / r).mean()),
        mr=float(r.mean()),
        hits1=float((r <= 1).double().mean()),
        hits3=float((r <= 3).double().mean()),
        hits10=float((r <= 10).double().mean()),
        n=int(r.numel()),
        tail_mrr=float((1.0 / tail_ranks.double()).mean())
        if tail_ranks is not None and len(tail_ranks)
        else float("nan"),
        head_mrr=float((1.0 / head_ranks.double()).mean())
        if head_ranks is not None and len(head_ranks)
        else float("nan"),
    )


class FilterIndex:
    """All known answers of every query, for filtered ranking.

    Args:
        triples: ``(M, 3)`` ``(h, r, t)`` triples to filter against (train + valid + test).
    """

    def __init__(self, triples: Tensor) -> None:
        tails: dict[tuple[int, int], list[int]] = defaultdict(list)
        heads: dict[tuple[int, int], list[int]] = defaultdict(list)
        for h, r, t in triples.tolist():
            tails[(h, r)].append(t)
            heads[(r, t)].append(h)
        self._tails = {k: torch.tensor(v, dtype=torch.long) for k, v in tails.items()}
        self._heads = {k: torch.tensor(v, dtype=torch.long) for k, v in heads.items()}
        self._empty = torch.zeros(0, dtype=torch.long)

    def tails(self, h: int, r: int) -> Tensor:
        """Known tails of ``(h, r, ?)``."""
        return self._tails.get((h, r), self._empty)

    def heads(self, r: int, t: int) -> Tensor:
        """Known heads of ``(?, r, t)``."""
        return self._heads.get((r, t), self._empty)


ScoreFn = Callable[[Tensor, Tensor, str], Tensor]


@torch.no_grad()
def evaluate(
    model: KGEModel | ScoreFn,
    triples: Tensor,
    filter_index: FilterIndex | None,
    *,
    batch_size: int = 500,
    max_triples: int | None = None,
) -> RankingMetrics:
    """Filtered (or raw, with ``filter_index=None``) ranking in both directions.

    Args:
        model: A ``KGEModel`` or a function ``(anchor, rel, direction) -> (B, N)`` scores.
        triples: ``(M, 3)`` test triples.
        filter_index: Known answers (build from train + valid + test), or ``None``.
        batch_size: Queries per forward pass.
        max_triples: Evaluate only the first ``max_triples`` (quick validation).

    Returns:
        Metrics over ``2 * M`` queries.
    """
    from kg.embeddings.models import KGEModel

    if max_triples is not None:
        triples = triples[:max_triples]
    score: ScoreFn
    device: torch.device | None = None
    was_training = False
    if isinstance(model, KGEModel):
        was_training = model.training
        model.eval()
        kge, ents = model, model.encode()
        device = ents.device

        def score(anchor: Tensor, rel: Tensor, direction: str) -> Tensor:
            return kge.score_all(anchor, rel, direction, ents)  # type: ignore[arg-type]
    else:
        score = model
    out: dict[str, list[Tensor]] = {"tail": [], "head": []}
    for i in range(0, len(triples), batch_size):
        b = triples[i : i + batch_size]
        h, r, t = b[:, 0], b[:, 1], b[:, 2]
        if device is not None:
            h, r, t = h.to(device), r.to(device), t.to(device)
        for direction, anchor, target in (("tail", h, t), ("head", t, h)):
            s = score(anchor, r, direction)
            known = None
            if filter_index is not None:
                if direction == "tail":
                    known = [filter_index.tails(a, rr) for a, rr in zip(h.tolist(), r.tolist(), strict=True)]
                else:
                    known = [filter_index.heads(rr, a) for a, rr in zip(t.tolist(), r.tolist(), strict=True)]
            out[direction].append(filtered_ranks(s.cpu(), target.cpu(), known))
    if isinstance(model, KGEModel) and was_training:
        model.train()
    tail = torch.cat(out["tail"]) if out["tail"] else torch.zeros(0)
    head = torch.cat(out["head"]) if out["head"] else torch.zeros(0)
    return metrics_from_ranks(torch.cat([tail, head]), tail, head)
