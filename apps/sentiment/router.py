"""HTTP routes of the sentiment app: ``/sentiment``, ``/sentiment/events``, ``/sentiment/timeline``, ``/alerts``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from apps.core.deps import ServicesDep
from apps.sentiment.schemas import (
    AckRequest,
    AlertOut,
    AnalyzeRequest,
    AnalyzeResponse,
    BucketOut,
    EventsRequest,
    EventsResponse,
    ModelOut,
    TimelineOut,
)
from apps.sentiment.service import EventIn, SentimentService
from apps.sentiment.store import AlertRow
from kgnlp.errors import ModelUnavailableError, ValidationError

__all__ = ["router"]

router = APIRouter(tags=["sentiment"])

MAX_BUCKETS = 5000


def get_sentiment(services: ServicesDep) -> SentimentService:
    s: SentimentService | None = getattr(services, "sentiment", None)
    if s is None:
        raise ModelUnavailableError("the sentiment app is not set up (run `kgnlp sentiment setup`, or `make serve`)")
    return s


SentimentDep = Annotated[SentimentService, Depends(get_sentiment)]


@router.post("/sentiment", response_model=AnalyzeResponse)
def analyze(body: AnalyzeRequest, svc: SentimentDep) -> AnalyzeResponse:
    """Label 1–256 texts (negative/neutral/positive with calibrated probabilities), with topics and companies."""
    results = svc.analyze(body.texts)
    return AnalyzeResponse.model_validate({"model": svc.classifier.name, "results": [r.__dict__ for r in results]})


@router.get("/sentiment/model", response_model=ModelOut)
def model_info(svc: SentimentDep) -> ModelOut:
    """The served model's provenance: training data, licence, held-out metrics, calibration, size, topics."""
    return ModelOut.model_validate({**svc.classifier.info(), "topics": svc.topics_info()})


@router.post("/sentiment/events", response_model=EventsResponse)
def ingest_events(body: EventsRequest, svc: SentimentDep) -> EventsResponse:
    """Classify and store events (idempotent on id), update the buckets and evaluate the alert rules."""
    summary = svc.ingest([EventIn(e.id, e.text, e.timestamp, e.source, e.entity) for e in body.events])
    return EventsResponse.model_validate(summary.__dict__)


def _dt(ts: int | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def alert_out(a: AlertRow) -> AlertOut:
    return AlertOut(
        id=a.id, rule=a.rule, scope=a.scope, key=a.key, status=a.status,
        started=_dt(a.started), fired=_dt(a.fired), resolved=_dt(a.resolved),
        peak=a.peak, limit=a.limit, breach_buckets=a.breach_buckets, acked=a.acked_at is not None,
        acked_at=None if a.acked_at is None else datetime.fromtimestamp(a.acked_at, UTC), ack_note=a.ack_note,
        explanation=a.explanation,
    )  # fmt: skip


@router.get("/sentiment/timeline", response_model=TimelineOut, responses={200: {"content": {"image/png": {}}}})
def timeline(
    svc: SentimentDep,
    entity: Annotated[str, Query(min_length=1, max_length=128, description="company id/ticker, sector:…, topic:…")],
    start: Annotated[datetime | None, Query(alias="from", description="default: `to` minus 7 days")] = None,
    end: Annotated[datetime | None, Query(alias="to", description="default: the newest event")] = None,
    bucket_s: Annotated[int | None, Query(alias="bucket", ge=60, le=30 * 86_400)] = None,
    format: Literal["json", "png"] = "json",
) -> TimelineOut | Response:
    """Counts per time bucket for a company, sector or topic, with its alerts; JSON or a PNG chart."""
    scope, key = svc.resolve_scope(entity)
    bucket = bucket_s or svc.monitor.bucket_s
    try:  # near datetime.min/max the arithmetic overflows: a client error, not a 500
        if end is None:
            latest = svc.store.latest_ts()
            end = datetime.fromtimestamp((latest or int(datetime.now(UTC).timestamp())) + 1, UTC)
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
        start = start or end - timedelta(days=7)
        start = start if start.tzinfo else start.replace(tzinfo=UTC)
    except (OverflowError, ValueError) as e:
        raise ValidationError(f"time range out of bounds: {e}") from e
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    if t1 <= t0:
        raise ValidationError(f"'from' ({start.isoformat()}) must be before 'to' ({end.isoformat()})")
    if (t1 - t0) // bucket > MAX_BUCKETS:
        raise ValidationError(f"that range holds more than {MAX_BUCKETS} buckets of {bucket} s; widen 'bucket'")
    buckets = svc.store.timeline(scope, key, t0, t1, bucket)
    alerts = [
        a for a in svc.store.list_alerts(scope=scope, key=key, limit=1000) if a.fired < t1 and (a.resolved or t1) >= t0
    ]
    out = TimelineOut(
        scope=scope,
        key=key,
        bucket_s=bucket,
        buckets=[BucketOut(start=_dt(b.start), n=b.n, negative=b.negative, neutral=b.neutral, positive=b.positive,
                           negative_share=round(b.negative_share, 4)) for b in buckets],
        alerts=[alert_out(a) for a in alerts],
    )  # fmt: skip
    if format == "png":
        from apps.sentiment.chart import timeline_png

        return Response(timeline_png(out, title=entity), media_type="image/png")
    return out


@router.get("/alerts", response_model=list[AlertOut])
def list_alerts(
    svc: SentimentDep,
    status: Literal["open", "resolved"] | None = None,
    entity: Annotated[str | None, Query(max_length=128, description="company id/ticker, sector:…, topic:…")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts, newest first, with their graph explanation."""
    scope, key = svc.resolve_scope(entity) if entity else (None, None)
    return [alert_out(a) for a in svc.store.list_alerts(status, scope, key, limit)]


AlertId = Annotated[str, Path(min_length=1, max_length=36)]


@router.get("/alerts/{alert_id}", response_model=AlertOut)
def get_alert(svc: SentimentDep, alert_id: AlertId) -> AlertOut:
    """One alert."""
    return alert_out(svc.store.get_alert(alert_id))


@router.post("/alerts/{alert_id}/ack", response_model=AlertOut)
def ack_alert(svc: SentimentDep, alert_id: AlertId, body: AckRequest | None = None) -> AlertOut:
    """Acknowledge an alert (it stays open until the series is back to normal)."""
    return alert_out(svc.store.ack_alert(alert_id, body.note if body else None))


@router.get("/admin/sentiment/deliveries")
def deliveries(
    svc: SentimentDep,
    status: Literal["pending", "delivered", "dead"] | None = Query(None, description="dead: the dead-letter list"),
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, object]]:
    """Webhook deliveries, newest first (admin: they show receiver URLs)."""
    return [d.__dict__ for d in svc.store.deliveries(status, limit)]
