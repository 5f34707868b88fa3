"""Why an alert fired, told through the graph: peers, sector, and the texts behind it.

A company alert is *sector-wide* when its sub-industry peers (``PEER_OF`` in the finance
graph) or the rest of its sector turn negative in the same window, and *company-specific*
when they do not. Movement is judged like the z-score rule: a scope moves when its negative
rate in the alert window is ``z`` binomial standard errors above its own trailing baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from apps.sentiment.companies import CompanyDirectory
from apps.sentiment.store import SentimentStore

__all__ = ["AlertExplainer", "mask_explanation"]


def mask_explanation(explanation: dict[str, Any], mask: Callable[[str], str]) -> dict[str, Any]:
    """A copy of an alert explanation with its driving texts masked (stored and webhook copies).

    Args:
        explanation: as :meth:`AlertExplainer.explain` builds it.
        mask: e.g. ``apps.core.pii.mask_pii``.

    Returns:
        the explanation whose ``driving_texts`` carry masked ``text`` values.
    """
    texts = explanation.get("driving_texts")
    if not isinstance(texts, list):
        return dict(explanation)
    masked = [{**t, "text": mask(t["text"])} if isinstance(t, dict) and "text" in t else t for t in texts]
    return {**explanation, "driving_texts": masked}


class AlertExplainer:
    """Builds the explanation stored with (and sent with) each alert.

    Args:
        store: where events and mentions are.
        directory: companies with sector and peers.
        baseline_s: length of the trailing baseline before the alert window.
        z: movement threshold in standard errors.
        min_volume: texts a peer needs in the window to be judged.
        min_rate: floor of baseline rates (as in the rules).
        mask: applied to the driving texts (PII masking), or None; events stored before masking
            was turned on are masked here too.
    """

    def __init__(
        self,
        store: SentimentStore,
        directory: CompanyDirectory,
        baseline_s: int,
        z: float = 2.0,
        min_volume: int = 3,
        min_rate: float = 0.05,
        mask: Callable[[str], str] | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.baseline_s = baseline_s
        self.z = z
        self.min_volume = min_volume
        self.min_rate = min_rate
        self.mask = mask

    def explain(self, scope: str, key: str, start: int, end: int) -> dict[str, Any]:
        """Explain a breach of ``scope``/``key`` over ``[start, end)`` (driving texts masked when asked)."""
        explanation = self._explain(scope, key, start, end)
        return mask_explanation(explanation, self.mask) if self.mask is not None else explanation

    def _explain(self, scope: str, key: str, start: int, end: int) -> dict[str, Any]:
        texts = self.store.driving_texts(scope, key, start, end)
        if scope != "company" or key not in self.directory:
            return {"summary": f"negative sentiment rose for {scope} {key}", "driving_texts": texts}
        company = self.directory.get(key)
        peers = sorted(company.peers)
        moving = self._moves("company", peers, start, end)
        judged = [p for p in peers if moving.get(p) is not None]
        peers_moving = [p for p in judged if moving[p]]
        others = [m for m in self.directory.sector_members(company.sector) if m != key] if company.sector else []
        sector_move = self._pooled_move(others, start, end)
        if not judged and sector_move is None:
            verdict = "undetermined"
            why = "too few texts about its peers or sector in the window to compare"
        elif (judged and 2 * len(peers_moving) >= len(judged)) or sector_move:
            verdict = "sector-wide"
            why = (
                f"{len(peers_moving)} of {len(judged)} peers with enough texts turned negative too"
                if judged
                else f"the rest of {company.sector_name} turned negative too"
            )
        else:
            verdict = "company-specific"
            why = (
                f"{len(judged) - len(peers_moving)} of {len(judged)} peers with enough texts did not move"
                if judged
                else f"the rest of {company.sector_name} did not move"
            )
        name = f"{company.name} ({company.ticker})" if company.ticker else company.name
        return {
            "summary": f"Negative sentiment spike on {name}: {verdict} — {why}.",
            "verdict": verdict,
            "company": company.public(),
            "sector": {"id": company.sector, "name": company.sector_name, "moving": sector_move},
            "sub_industry": {"id": company.sub_industry, "name": company.sub_industry_name},
            "peers": [
                {
                    "id": p,
                    "name": self.directory.get(p).name,
                    "ticker": self.directory.get(p).ticker,
                    "moving": moving.get(p),
                }
                for p in peers
            ],
            "driving_texts": texts,
        }

    def _z(self, now: tuple[int, int], base: tuple[int, int]) -> float | None:
        n, neg = now
        bn, bneg = base
        if n < self.min_volume:
            return None
        p0 = min(1 - self.min_rate, max(self.min_rate, bneg / bn)) if bn else self.min_rate  # as the rules do
        return (neg / n - p0) / math.sqrt(p0 * (1 - p0) / n)

    def _moves(self, scope: str, keys: list[str], start: int, end: int) -> dict[str, bool | None]:
        now = self.store.scope_counts(scope, keys, start, end)
        base = self.store.scope_counts(scope, keys, start - self.baseline_s, start)
        out: dict[str, bool | None] = {}
        for k in keys:
            z = self._z(now.get(k, (0, 0)), base.get(k, (0, 0)))
            out[k] = None if z is None else z > self.z
        return out

    def _pooled_move(self, keys: list[str], start: int, end: int) -> bool | None:
        now = self.store.scope_counts("company", keys, start, end)
        base = self.store.scope_counts("company", keys, start - self.baseline_s, start)
        pooled_now = (sum(v[0] for v in now.values()), sum(v[1] for v in now.values()))
        pooled_base = (sum(v[0] for v in base.values()), sum(v[1] for v in base.values()))
        z = self._z(pooled_now, pooled_base)
        return None if z is None else z > self.z
