"""Alert explanations and webhook payloads carry masked texts when stored-text masking is on."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from apps.core.pii import mask_pii
from apps.sentiment.explain import AlertExplainer
from apps.sentiment.monitor import AlertMonitor
from apps.sentiment.rules import AlertPolicy, ZScoreRule
from apps.sentiment.service import EventIn, SentimentService
from apps.sentiment.store import SentimentStore
from apps.sentiment.webhooks import WebhookDispatcher
from tests.apps.sentiment.test_monitoring import (
    HOUR,
    T0,
    FixedTagger,
    KeywordClassifier,
    background,
    directory,
    link,
)

SECRETS = ("jo.bloggs@example.com", "Jo Bloggs", "7946 0958")


def test_alert_explanations_and_webhooks_mask_texts_stored_in_clear(tmp_path: Path) -> None:
    """Events stored before masking was turned on (``mask=None`` at ingest) still leave masked."""
    store = SentimentStore(f"sqlite:///{tmp_path / 's.sqlite'}").open()
    d = directory()
    explainer = AlertExplainer(store, d, baseline_s=24 * HOUR, z=2.0, min_volume=3, mask=mask_pii)
    rule = ZScoreRule(name="z", z=3.0, window=24, min_volume=5, min_baseline=20)
    monitor = AlertMonitor(store, [rule], AlertPolicy(pending=1, resolve_after=2, cooldown_buckets=2), HOUR, 24 * 4,
                           explainer=explainer)  # fmt: skip
    hooks = WebhookDispatcher(store, ["http://127.0.0.1:9/hook"], mask=mask_pii)  # never started: rows only
    monitor.notify = hooks.enqueue
    svc = SentimentService(KeywordClassifier(), FixedTagger(), d, link, store, monitor, mask=None)
    when = T0 + timedelta(hours=30, minutes=30)
    text = "$AAA shares plunge, my name is Jo Bloggs, mail jo.bloggs@example.com or +44 20 7946 0958"
    burst = [EventIn(f"b{j}", f"{text} #{j}", when + timedelta(minutes=j)) for j in range(8)]
    svc.ingest(background(["AAA", "BBB", "CCC"], hours=30) + burst)
    (alert,) = store.list_alerts()
    texts = alert.explanation["driving_texts"]
    assert texts and all("[EMAIL]" in t["text"] and "[NAME]" in t["text"] for t in texts)
    (delivery,) = store.deliveries()
    payload = json.loads(delivery.payload)
    assert payload["alert"]["id"] == alert.id and payload["alert"]["explanation"]["driving_texts"]
    for secret in SECRETS:
        assert secret not in json.dumps(alert.explanation) and secret not in delivery.payload, secret
    stored = store.driving_texts("company", "company:AAA", 0, 2**40, limit=1000)
    assert any("jo.bloggs@example.com" in t["text"] for t in stored)  # the events themselves were kept in clear
    svc.close()
