"""Alert rules on a bucketed negative-sentiment series, and the episode state machine.

Pure functions over :class:`Bucket` lists, so the maths is testable on hand-made series.
A rule turns each bucket into a :class:`Reading` (a value, the limit it is compared with,
and whether it breaches); :func:`episodes` turns readings into alert episodes with a
pending period, dedupe (one episode at a time), resolution after enough normal buckets,
and a cooldown before the next episode.

Baselines use the pooled negative rate of the trailing ``window`` buckets (current bucket
excluded) and the binomial standard error of the current bucket, with the baseline rate
floored at ``min_rate`` so a quiet history does not turn one negative text into z = ∞.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "AlertPolicy",
    "AlertRule",
    "Bucket",
    "Episode",
    "EwmaRule",
    "Reading",
    "Rule",
    "ShareRule",
    "ZScoreRule",
    "episodes",
]


@dataclass(frozen=True, slots=True)
class Bucket:
    """Counts of one time bucket of one scope (company, sector or topic)."""

    start: int  # epoch seconds of the bucket start
    n: int  # texts in the bucket
    negative: int  # texts labelled negative

    @property
    def rate(self) -> float:
        return self.negative / self.n if self.n else 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    """A rule's verdict on one bucket: ``breach`` is None when it could not judge (low volume, warm-up)."""

    start: int
    value: float
    limit: float
    breach: bool | None


class _RuleBase(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}

    name: str
    min_volume: int = Field(5, ge=1, description="readings over fewer texts are not judged")
    span: int = Field(1, ge=1, le=168, description="buckets pooled into each reading (a sliding window)")

    def _pooled(self, series: Sequence[Bucket], i: int) -> Bucket:
        """The last ``span`` buckets up to ``i`` as one bucket (keeps bucket ``i``'s start)."""
        window = series[max(0, i - self.span + 1) : i + 1]
        return Bucket(series[i].start, sum(b.n for b in window), sum(b.negative for b in window))


class ShareRule(_RuleBase):
    """Negative share of the pooled window above ``threshold`` (with at least ``min_volume`` texts)."""

    kind: Literal["share"] = "share"
    threshold: float = Field(0.5, gt=0, lt=1)

    def readings(self, series: Sequence[Bucket]) -> list[Reading]:
        out = []
        for i in range(len(series)):
            b = self._pooled(series, i)
            out.append(
                Reading(b.start, b.rate, self.threshold, b.rate > self.threshold if b.n >= self.min_volume else None)
            )
        return out


class _BaselineRule(_RuleBase):
    window: int = Field(24, ge=2, description="trailing buckets (before the pooled window) forming the baseline")
    min_baseline: float = Field(30, ge=0, description="texts (plus prior weight) the baseline needs to judge")
    min_rate: float = Field(0.05, gt=0, lt=1, description="floor of the baseline negative rate")
    prior_rate: float = Field(0.15, gt=0, lt=1, description="negative rate assumed where history is thin")
    prior_weight: float = Field(0.0, ge=0, description="pseudo-texts of the prior mixed into every baseline")

    def _baseline(self, series: Sequence[Bucket], i: int) -> float | None:
        end = max(0, i - self.span + 1)
        past = series[max(0, end - self.window) : end]
        n = sum(b.n for b in past) + self.prior_weight
        if n < self.min_baseline or n == 0:
            return None
        neg = sum(b.negative for b in past) + self.prior_rate * self.prior_weight
        # floored (a quiet history) and capped (an all-negative one): the binomial error stays > 0
        return min(1 - self.min_rate, max(self.min_rate, neg / n))


class ZScoreRule(_BaselineRule):
    """z-score of the pooled negative rate against the trailing baseline rate, above ``z``.

    With ``prior_weight`` > 0 the baseline is shrunk towards ``prior_rate``, so companies
    with little history are judged against the typical rate instead of not at all.
    """

    kind: Literal["zscore"] = "zscore"
    z: float = Field(3.0, gt=0)

    def readings(self, series: Sequence[Bucket]) -> list[Reading]:
        out = []
        for i in range(len(series)):
            b = self._pooled(series, i)
            p0 = self._baseline(series, i)
            if p0 is None or b.n < self.min_volume:
                out.append(Reading(b.start, 0.0, self.z, None))
                continue
            score = (b.rate - p0) / math.sqrt(p0 * (1 - p0) / b.n)
            out.append(Reading(b.start, score, self.z, score > self.z))
        return out


class EwmaRule(_BaselineRule):
    """EWMA control chart of the negative rate: breach above ``p0 + L·σ·√(λ/(2−λ))``.

    The EWMA restarts from the baseline rate whenever the baseline is (re)established and
    skips empty buckets; σ is the binomial standard error at the mean bucket volume of the
    baseline window.
    """

    kind: Literal["ewma"] = "ewma"
    lam: float = Field(0.3, gt=0, le=1, description="EWMA smoothing λ")
    width: float = Field(3.0, gt=0, description="control limit width L in standard errors")

    def readings(self, series: Sequence[Bucket]) -> list[Reading]:
        out: list[Reading] = []
        ewma: float | None = None
        for i, b in enumerate(series):
            p0 = self._baseline(series, i)
            if p0 is None:
                ewma = None
                out.append(Reading(b.start, 0.0, 1.0, None))
                continue
            if b.n == 0:
                out.append(Reading(b.start, ewma if ewma is not None else p0, 1.0, None))
                continue
            ewma = (p0 if ewma is None else ewma) * (1 - self.lam) + self.lam * b.rate
            past = [x for x in series[max(0, i - self.window) : i] if x.n]
            mean_n = sum(x.n for x in past) / max(1, len(past))
            sigma = math.sqrt(p0 * (1 - p0) / max(mean_n, 1.0))
            limit = p0 + self.width * sigma * math.sqrt(self.lam / (2 - self.lam))
            out.append(Reading(b.start, ewma, limit, ewma > limit if b.n >= self.min_volume else None))
        return out


Rule = ShareRule | ZScoreRule | EwmaRule
AlertRule = Rule  # the union as settings validate it (discriminated on ``kind``)


class AlertPolicy(BaseModel):
    """How breaches become alerts."""

    model_config = {"extra": "forbid", "frozen": True}

    pending: int = Field(1, ge=1, description="consecutive breaching buckets before an alert fires")
    resolve_after: int = Field(2, ge=1, description="consecutive normal buckets before it resolves")
    cooldown_buckets: int = Field(6, ge=0, description="buckets after a resolution before the next alert")


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert: breaching from ``started`` (bucket start), fired at ``fired``, resolved at ``resolved``."""

    started: int
    fired: int
    resolved: int | None
    peak: float
    limit: float
    breach_buckets: int


def episodes(readings: Sequence[Reading], policy: AlertPolicy) -> list[Episode]:
    """Turn per-bucket readings into alert episodes.

    A bucket the rule could not judge (``breach is None``: too few texts, no baseline yet)
    neither advances nor resets a pending breach, but while an alert is open it counts as
    normal: a company that stops being talked about is not an ongoing crisis. At most one
    episode is open at a time.

    Args:
        readings: the rule's readings in time order.
        policy: pending period, resolution and cooldown.

    Returns:
        the episodes in time order; the last one may be unresolved (``resolved`` None).
    """
    out: list[Episode] = []
    run: list[Reading] = []  # consecutive breaching readings (pending or firing)
    fired: int | None = None
    normal = 0
    cooldown_until = -1
    for idx, r in enumerate(readings):
        if r.breach is None and fired is None:
            continue
        if fired is None:
            if r.breach and idx > cooldown_until:
                run.append(r)
                if len(run) >= policy.pending:
                    fired = r.start
                    normal = 0
            else:
                run = []
            continue
        if r.breach:
            run.append(r)
            normal = 0
            continue
        normal += 1
        if normal >= policy.resolve_after:
            out.append(_episode(run, fired, r.start))
            run, fired, normal = [], None, 0
            cooldown_until = idx + policy.cooldown_buckets
    if fired is not None:
        out.append(_episode(run, fired, None))
    return out


def _episode(run: list[Reading], fired: int, resolved: int | None) -> Episode:
    peak = max(run, key=lambda r: r.value)
    return Episode(run[0].start, fired, resolved, peak.value, peak.limit, len(run))
