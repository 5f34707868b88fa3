"""Turns stored mentions into alerts: evaluate the rules over each touched scope, persist episodes.

Evaluation is deterministic over the stored buckets, so running it again (after a restart,
a replay or a late event) updates the same alerts instead of creating new ones: an alert is
keyed by rule, scope, key and the bucket its episode started in, and a breach that continues
an open alert extends that alert.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence

from apps.sentiment.explain import AlertExplainer
from apps.sentiment.rules import AlertPolicy, Bucket, Episode, Rule, episodes
from apps.sentiment.store import AlertRow, SentimentStore

__all__ = ["AlertMonitor"]

log = logging.getLogger("kgnlp.sentiment.alerts")

Notify = Callable[[AlertRow, str], None]


class AlertMonitor:
    """Evaluates alert rules on bucketed series and records the resulting alerts.

    Args:
        store: events, mentions and alerts.
        rules: the rules (each evaluated on every scope kind in ``scopes``).
        policy: pending period, resolution and cooldown.
        bucket_s: bucket width in seconds.
        lookback_buckets: how much history an evaluation reads.
        scopes: scope kinds that raise alerts (``company``, ``sector``, ``topic``).
        explainer: builds the explanation of a new alert.
        notify: called with ``(alert, "alert.fired" | "alert.resolved")`` after the write.
    """

    def __init__(
        self,
        store: SentimentStore,
        rules: Sequence[Rule],
        policy: AlertPolicy,
        bucket_s: int,
        lookback_buckets: int,
        scopes: Sequence[str] = ("company",),
        explainer: AlertExplainer | None = None,
        notify: Notify | None = None,
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self.policy = policy
        self.bucket_s = bucket_s
        self.lookback_buckets = lookback_buckets
        self.scopes = set(scopes)
        self.explainer = explainer
        self.notify = notify

    def evaluate(self, touched: Iterable[tuple[str, str, int]]) -> list[tuple[AlertRow, str]]:
        """Re-evaluate every touched scope up to the latest timestamp seen for it.

        Args:
            touched: ``(scope, key, ts)`` of newly stored mentions.

        Returns:
            the alerts that fired or resolved, with the change.
        """
        latest: dict[tuple[str, str], int] = {}
        for scope, key, ts in touched:
            if scope in self.scopes:
                latest[(scope, key)] = max(ts, latest.get((scope, key), ts))
        changes = []
        for (scope, key), ts in sorted(latest.items()):
            changes += self.evaluate_scope(scope, key, ts)
        return changes

    def evaluate_scope(self, scope: str, key: str, until_ts: int) -> list[tuple[AlertRow, str]]:
        """Evaluate one scope's series ending with the bucket that holds ``until_ts``."""
        b = self.bucket_s
        end = (until_ts // b + 1) * b
        start = end - self.lookback_buckets * b
        series = [Bucket(t.start, t.n, t.negative) for t in self.store.timeline(scope, key, start, end, b)]
        changes = []
        for rule in self.rules:
            for ep in episodes(rule.readings(series), self.policy):
                change = self._record(rule.name, scope, key, ep)
                if change is not None:
                    changes.append(change)
        return changes

    def _record(self, rule: str, scope: str, key: str, ep: Episode) -> tuple[AlertRow, str] | None:
        existing = self.store.find_alert(rule, scope, key, ep.started)
        if existing is None:
            open_alert = self.store.open_alert(rule, scope, key)
            if open_alert is not None and open_alert.started < ep.started:
                # the same breach seen through a shorter lookback: continue the open alert
                ep = dataclasses.replace(ep, started=open_alert.started, fired=open_alert.fired)
                existing = open_alert
        status = "open" if ep.resolved is None else "resolved"
        if existing is not None and (existing.status, existing.resolved, existing.breach_buckets) == (
            status,
            ep.resolved,
            ep.breach_buckets,
        ):
            return None  # nothing new
        row = AlertRow(
            id="",
            rule=rule,
            scope=scope,
            key=key,
            status=status,
            started=ep.started,
            fired=ep.fired,
            resolved=ep.resolved,
            peak=round(ep.peak, 4),
            limit=round(ep.limit, 4),
            breach_buckets=ep.breach_buckets,
        )
        if existing is None and self.explainer is not None:
            row.explanation = self.explainer.explain(scope, key, ep.started, ep.fired + self.bucket_s)
        stored, change = self.store.upsert_alert(row)
        if change is None:
            return None
        log.info("alert %s: %s %s/%s (rule %s)", change, stored.id, scope, key, rule)
        if self.notify is not None:
            self.notify(stored, change)
        return stored, change
