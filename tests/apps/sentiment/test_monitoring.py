"""Event ingest, buckets, alerts and their graph explanations on a real SQLite store.

The classifier and tagger are deterministic fakes (the real ones are tested in
test_classifier*.py and through the API); everything else is the real code.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apps.sentiment.classifier import SentimentPrediction
from apps.sentiment.companies import Company, CompanyDirectory
from apps.sentiment.explain import AlertExplainer
from apps.sentiment.monitor import AlertMonitor
from apps.sentiment.rules import AlertPolicy, ZScoreRule
from apps.sentiment.service import EventIn, SentimentService
from apps.sentiment.store import SentimentStore
from kgnlp.errors import ValidationError

T0 = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = 3600


class KeywordClassifier:
    """negative if the text says 'plunge', positive if 'soar', else neutral."""

    name = "keyword-fake"

    def predict(self, texts: Sequence[str]) -> list[SentimentPrediction]:
        out = []
        for t in texts:
            label = "negative" if "plunge" in t else "positive" if "soar" in t else "neutral"
            probs = {k: (0.8 if k == label else 0.1) for k in ("negative", "neutral", "positive")}
            out.append(SentimentPrediction(label, probs))
        return out


class FixedTagger:
    names = ("earnings",)

    def tag(self, texts: Sequence[str]) -> list[list[str]]:
        return [["earnings"] if "quarter" in t else [] for t in texts]


class Mention:
    def __init__(self, entity_id: str, surface: str) -> None:
        self.entity_id, self.surface = entity_id, surface


def directory() -> CompanyDirectory:
    def co(t: str, sub: str, sector: str) -> Company:
        return Company(f"company:{t}", f"{t} Inc", t, f"sector:{sector}", sector.title(), f"sub:{sub}", sub.title())

    cos = {c.id: c for c in [co("AAA", "chips", "tech"), co("BBB", "chips", "tech"), co("CCC", "chips", "tech"),
                             co("DDD", "banks", "finance")]}  # fmt: skip
    for a in ("AAA", "BBB", "CCC"):
        cos[f"company:{a}"].peers = {f"company:{b}" for b in ("AAA", "BBB", "CCC") if b != a}
    return CompanyDirectory(cos)


def link(texts: list[str]) -> list[list[Mention]]:
    return [[Mention(f"company:{w[1:]}", w) for w in text.split() if w.startswith("$")] for text in texts]


def make_service(db: Path, *, mask: bool = False, notify: list | None = None) -> SentimentService:
    store = SentimentStore(f"sqlite:///{db}").open()
    d = directory()
    rule = ZScoreRule(name="z", z=3.0, window=24, min_volume=5, min_baseline=20)
    monitor = AlertMonitor(store, [rule], AlertPolicy(pending=1, resolve_after=2, cooldown_buckets=2), HOUR, 24 * 4,
                           explainer=AlertExplainer(store, d, baseline_s=24 * HOUR, z=2.0, min_volume=3))  # fmt: skip
    if notify is not None:
        monitor.notify = lambda alert, change: notify.append((alert.key, change))
    from apps.core.pii import mask_pii

    return SentimentService(
        KeywordClassifier(), FixedTagger(), d, link, store, monitor, mask=mask_pii if mask else None
    )


def background(tickers: Sequence[str], hours: int, per_hour: int = 4, start: int = 0) -> list[EventIn]:
    """Mostly neutral chatter: one negative text in every 8."""
    out = []
    for h in range(start, start + hours):
        for t in tickers:
            for j in range(per_hour):
                word = "plunge" if (h * per_hour + j) % 8 == 0 else "steady"
                out.append(
                    EventIn(f"bg-{t}-{h}-{j}", f"${t} shares {word} this quarter", T0 + timedelta(hours=h, minutes=j))
                )
    return out


def burst(ticker: str, hour: int, n: int = 8) -> list[EventIn]:
    when = T0 + timedelta(hours=hour, minutes=30)
    return [EventIn(f"burst-{ticker}-{hour}-{j}", f"${ticker} shares plunge on probe", when + timedelta(minutes=j))
            for j in range(n)]  # fmt: skip


def test_ingest_is_idempotent_and_attributes_companies_sectors_topics(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "s.sqlite")
    batch = [EventIn("e1", "$AAA shares plunge this quarter", T0), EventIn("e2", "$BBB steady", T0),
             EventIn("e1", "repeated id in the same batch", T0)]  # fmt: skip
    first = svc.ingest(batch)
    assert first.inserted == 2 and first.duplicates == ["e1"]
    again = svc.ingest(batch[:2])
    assert again.inserted == 0 and again.duplicates == ["e1", "e2"]
    assert svc.store.count_events() == 2
    t = svc.store.timeline("company", "company:AAA", int(T0.timestamp()), int(T0.timestamp()) + HOUR, HOUR)
    assert [(b.n, b.negative) for b in t] == [(1, 1)]
    sector = svc.store.timeline("sector", "sector:tech", int(T0.timestamp()), int(T0.timestamp()) + HOUR, HOUR)
    assert sector[0].n == 2 and sector[0].negative == 1
    topic = svc.store.timeline("topic", "earnings", int(T0.timestamp()), int(T0.timestamp()) + HOUR, HOUR)
    assert topic[0].n == 1


def test_explicit_entity_attribution_and_unknown_entity_is_rejected_atomically(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "s.sqlite")
    svc.ingest([EventIn("x1", "no ticker here, shares plunge", T0, entity="DDD")])
    t = svc.store.timeline("company", "company:DDD", int(T0.timestamp()), int(T0.timestamp()) + HOUR, HOUR)
    assert t[0].negative == 1
    with pytest.raises(ValidationError, match="ZZZ"):
        svc.ingest([EventIn("x2", "fine", T0), EventIn("x3", "fine", T0, entity="ZZZ")])
    assert svc.store.existing_ids(["x2", "x3"]) == set()


def test_timeline_fills_empty_buckets(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "s.sqlite")
    svc.ingest([EventIn("a", "$AAA steady", T0), EventIn("b", "$AAA plunge", T0 + timedelta(hours=3))])
    t = svc.store.timeline("company", "company:AAA", int(T0.timestamp()), int(T0.timestamp()) + 4 * HOUR, HOUR)
    assert [b.n for b in t] == [1, 0, 0, 1]


def test_company_specific_burst_fires_one_explained_alert_then_resolves(tmp_path: Path) -> None:
    changes: list = []
    svc = make_service(tmp_path / "s.sqlite", notify=changes)
    svc.ingest(background(["AAA", "BBB", "CCC"], hours=30))
    assert svc.store.list_alerts() == [] and changes == []  # no alert on the background alone
    result = svc.ingest(burst("AAA", hour=30) + background(["AAA", "BBB", "CCC"], hours=1, start=30))
    assert [(a["key"], a["change"]) for a in result.alerts] == [("company:AAA", "alert.fired")]
    (alert,) = svc.store.list_alerts(status="open")
    assert alert.key == "company:AAA" and alert.started == int((T0 + timedelta(hours=30)).timestamp())
    ex = alert.explanation
    assert ex["verdict"] == "company-specific"
    assert {p["id"] for p in ex["peers"]} == {"company:BBB", "company:CCC"}
    assert all(p["moving"] is False for p in ex["peers"])
    assert ex["driving_texts"] and all("plunge" in d["text"] for d in ex["driving_texts"])
    # more texts in the same bucket update the alert; they do not create another one
    svc.ingest([EventIn("late", "$AAA plunge again", T0 + timedelta(hours=30, minutes=59))])
    assert len(svc.store.list_alerts()) == 1
    svc.ingest(background(["AAA", "BBB", "CCC"], hours=3, start=31))
    (alert,) = svc.store.list_alerts()
    assert alert.status == "resolved" and alert.resolved == int((T0 + timedelta(hours=32)).timestamp())
    assert changes == [("company:AAA", "alert.fired"), ("company:AAA", "alert.resolved")]


def test_sector_wide_burst_is_explained_as_such(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "s.sqlite")
    svc.ingest(background(["AAA", "BBB", "CCC"], hours=30))
    svc.ingest(burst("AAA", 30) + burst("BBB", 30) + burst("CCC", 30))
    alerts = svc.store.list_alerts(status="open")
    assert {a.key for a in alerts} == {"company:AAA", "company:BBB", "company:CCC"}
    assert {a.explanation["verdict"] for a in alerts} == {"sector-wide"}


def test_restart_keeps_open_alerts_and_buckets_without_duplicating(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    svc = make_service(db)
    svc.ingest(background(["AAA", "BBB", "CCC"], hours=30) + burst("AAA", 30))
    before = svc.store.list_alerts()
    t_before = svc.store.timeline("company", "company:AAA", int(T0.timestamp()), int(T0.timestamp()) + 31 * HOUR, HOUR)
    svc.close()
    svc2 = make_service(db)
    assert [(a.id, a.status) for a in svc2.store.list_alerts()] == [(a.id, a.status) for a in before]
    assert (
        svc2.store.timeline("company", "company:AAA", int(T0.timestamp()), int(T0.timestamp()) + 31 * HOUR, HOUR)
        == t_before
    )
    # re-evaluating after the restart finds the same episode, not a new alert
    assert svc2.monitor.evaluate([("company", "company:AAA", int((T0 + timedelta(hours=30)).timestamp()))]) == []
    assert len(svc2.store.list_alerts()) == 1


def test_a_retried_batch_evaluates_events_stored_without_evaluation(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "s.sqlite")
    events = background(["AAA", "BBB", "CCC"], hours=30) + burst("AAA", 30)
    real_evaluate = svc.monitor.evaluate
    svc.monitor.evaluate = lambda touched: []  # as if killed after the commit, before the evaluation
    svc.ingest(events)
    assert svc.store.list_alerts() == []
    svc.monitor.evaluate = real_evaluate
    retry = svc.ingest(events[-8:])  # the replay is run again: all duplicates
    assert retry.inserted == 0 and [(a["key"], a["change"]) for a in retry.alerts] == [("company:AAA", "alert.fired")]


def test_ack_and_unknown_alert(tmp_path: Path) -> None:
    from kgnlp.errors import NotFoundError

    svc = make_service(tmp_path / "s.sqlite")
    svc.ingest(background(["AAA", "BBB", "CCC"], hours=30) + burst("AAA", 30))
    (alert,) = svc.store.list_alerts()
    acked = svc.store.ack_alert(alert.id, "looking into it")
    assert acked.acked_at is not None and acked.ack_note == "looking into it" and acked.status == "open"
    with pytest.raises(NotFoundError):
        svc.store.ack_alert("nope", None)


def test_stored_texts_are_masked_when_configured(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "s.sqlite", mask=True)
    svc.ingest([EventIn("m1", "$AAA plunge, call me at +44 20 7946 0958 or jo@example.com", T0)])
    (row,) = svc.store.driving_texts("company", "company:AAA", 0, 2**40)
    assert "jo@example.com" not in row["text"] and "[EMAIL]" in row["text"] and "[PHONE]" in row["text"]


def test_explainer_with_an_all_negative_baseline_judges_instead_of_dividing_by_zero() -> None:
    from apps.sentiment.explain import AlertExplainer

    explainer = AlertExplainer(None, None, 3600)  # type: ignore[arg-type]  # only its arithmetic is used
    z = explainer._z((4, 4), (10, 10))  # all negative now and before: no movement
    assert z is not None and z < explainer.z
