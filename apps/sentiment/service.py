"""The sentiment app's long-lived objects and its two operations: analyse texts, ingest events."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apps.core.services import Component
from apps.core.settings import SentimentSettings, Settings
from apps.sentiment.companies import CompanyDirectory
from apps.sentiment.store import EventRecord, SentimentStore
from kgnlp.errors import NotFoundError, ValidationError

__all__ = ["Analysis", "EventIn", "IngestSummary", "SentimentService", "build_service", "load"]

log = logging.getLogger("kgnlp.sentiment")


@dataclass(frozen=True)
class EventIn:
    """One text to monitor; ``entity`` (an id or ticker) attributes it explicitly."""

    id: str
    text: str
    timestamp: datetime
    source: str = "api"
    entity: str | None = None


@dataclass
class Analysis:
    label: str
    probabilities: dict[str, float]
    topics: list[str]
    entities: list[dict[str, Any]]


@dataclass
class IngestSummary:
    inserted: int
    duplicates: list[str]
    alerts: list[dict[str, Any]] = field(default_factory=list)


class SentimentService:
    """Classifies, tags and links texts; stores events and raises alerts.

    Args:
        classifier: ``apps.sentiment.classifier.SentimentClassifier``.
        tagger: ``apps.sentiment.topics.TopicTagger``.
        directory: companies of the finance graph (may be empty).
        link: ``texts -> mentions of each text`` (the graph linker's ``link_many``: one
            embedder call per batch), or None without a graph.
        store: events and alerts.
        monitor: ``apps.sentiment.monitor.AlertMonitor``.
        dispatcher: webhook sender (optional).
        mask: applied to texts before they are stored (PII masking), or None.
        owned: further objects this service closes (e.g. a graph registry it opened).
    """

    def __init__(
        self,
        classifier: Any,
        tagger: Any,
        directory: CompanyDirectory,
        link: Callable[[list[str]], list[list[Any]]] | None,
        store: SentimentStore,
        monitor: Any,
        dispatcher: Any = None,
        mask: Callable[[str], str] | None = None,
        owned: Sequence[Any] = (),
    ) -> None:
        self.classifier = classifier
        self.tagger = tagger
        self.directory = directory
        self.link = link
        self.store = store
        self.monitor = monitor
        self.dispatcher = dispatcher
        self.mask = mask
        self.owned = list(owned)
        self.alert_counts: Counter[tuple[str, str]] = Counter()  # (rule, change) -> n, for /metrics

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.close()
        self.store.close()
        for part in self.owned:
            part.close()

    def analyze(self, texts: Sequence[str]) -> list[Analysis]:
        """Label, probabilities, topics and linked companies of each text, in input order."""
        texts = list(texts)
        if getattr(self.tagger, "needs_vectors", False):  # the topic head reads the classifier's own pass
            preds, vectors = self.classifier.predict_with_vectors(texts)
            topics = self.tagger.tag(texts, vectors=vectors)
        else:
            preds, topics = self.classifier.predict(texts), self.tagger.tag(texts)
        mentions = self.link(texts) if self.link is not None else [[] for _ in texts]
        return [
            Analysis(p.label, dict(p.probabilities), t, self._companies(ms, p.label))
            for ms, p, t in zip(mentions, preds, topics, strict=True)
        ]

    def topics_info(self) -> dict[str, Any]:
        """The topic tagger: its method, topic names and (a fitted head) how it was fitted."""
        if getattr(self.tagger, "needs_vectors", False):
            return {"method": "head", "names": list(self.tagger.names), **self.tagger.report}
        return {"method": "similarity", "names": list(self.tagger.names), "threshold": self.tagger.threshold}

    def _companies(self, mentions: list[Any], label: str) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for m in mentions:
            if m.entity_id in self.directory and m.entity_id not in out:
                out[m.entity_id] = {
                    **self.directory.get(m.entity_id).public(),
                    "surface": m.surface,
                    "sentiment": label,
                }
        return list(out.values())

    def ingest(self, batch: Sequence[EventIn]) -> IngestSummary:
        """Classify and store new events (known ids are skipped), then evaluate alerts.

        Raises:
            ValidationError: an event names an unknown entity (nothing of the batch is stored).
        """
        explicit = {}
        for e in batch:
            if e.entity is not None:
                try:
                    explicit[e.id] = self.directory.resolve(e.entity)
                except NotFoundError as err:
                    raise ValidationError(f"event {e.id!r}: {err}") from err
        known = self.store.existing_ids(e.id for e in batch)
        fresh, seen = [], set(known)
        for e in batch:
            if e.id not in seen:
                fresh.append(e)
                seen.add(e.id)
        records = []
        if fresh:
            analyses = self.analyze([e.text for e in fresh])
            for e, a in zip(fresh, analyses, strict=True):
                companies = list(a.entities)
                forced = explicit.get(e.id)
                if forced is not None and all(c["id"] != forced.id for c in companies):
                    companies.insert(0, {**forced.public(), "surface": None, "sentiment": a.label})
                scopes = [("company", c["id"]) for c in companies]
                scopes += [("sector", s) for c in companies if (s := self.directory.get(c["id"]).sector)]
                scopes += [("topic", t) for t in a.topics]
                records.append(
                    EventRecord(
                        id=e.id, ts=_epoch(e.timestamp), source=e.source,
                        text=self.mask(e.text) if self.mask else e.text, label=a.label,
                        probabilities=a.probabilities, topics=a.topics, entities=companies, scopes=scopes,
                    )
                )  # fmt: skip
        result = self.store.add_events(records)
        inserted = set(result.inserted)
        touched = [(s, k, r.ts) for r in records if r.id in inserted for s, k in r.scopes]
        # events stored before (e.g. by a replay killed between its commit and the evaluation)
        # are evaluated again: evaluation is idempotent, so a retry completes what was cut short
        touched += self.store.mentions_of(known)
        changes = self.monitor.evaluate(touched)
        dupes, stored = [], set()
        for e in batch:
            if e.id in inserted and e.id not in stored:
                stored.add(e.id)
            else:
                dupes.append(e.id)
        return IngestSummary(
            len(inserted), dupes, [{"id": a.id, "change": c, "scope": a.scope, "key": a.key} for a, c in changes]
        )

    def resolve_scope(self, entity: str) -> tuple[str, str]:
        """``(scope, key)`` for a timeline/alert filter: a company (id/ticker), ``sector:…`` or ``topic:…``."""
        if entity.startswith("topic:"):
            return "topic", entity.removeprefix("topic:")
        if entity.startswith("sector:"):
            return "sector", entity
        return "company", self.directory.resolve(entity).id


def _epoch(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp())


def build_service(settings: Settings, embedder: Any, graphs: Any, classifier: Any) -> SentimentService:
    """Assemble the service from loaded parts (the API's lifespan and ``kgnlp sentiment replay``)."""
    from apps.core.pii import mask_pii
    from apps.sentiment.explain import AlertExplainer
    from apps.sentiment.monitor import AlertMonitor
    from apps.sentiment.topics import TopicTagger, load_topics
    from apps.sentiment.webhooks import WebhookDispatcher

    cfg: SentimentSettings = settings.sentiment
    topics = load_topics(cfg.topics_file)
    tagger: Any = None
    if cfg.topic_tagger == "head":
        tagger = fit_topic_head(topics, classifier, cfg, settings.home)
    if tagger is None:
        tagger = TopicTagger(
            topics,
            lambda texts: embedder.encode(texts, normalize_embeddings=True, batch_size=cfg.batch_size),
            threshold=cfg.topic_threshold,
            max_topics=cfg.max_topics,
        )
    directory, link = CompanyDirectory({}), None
    if graphs is not None:
        try:
            directory = CompanyDirectory.from_store(graphs.get(cfg.graph))
            link = graphs.linker(cfg.graph).link_many
        except NotFoundError as e:
            log.warning("sentiment without company linking: %s", e)
    store = SentimentStore(settings.db_url).open()
    mask = mask_pii if settings.observability.mask_pii_stored else None
    dispatcher = None
    if cfg.webhook_urls:
        secret = cfg.webhook_secret.get_secret_value() if cfg.webhook_secret else None
        dispatcher = WebhookDispatcher(
            store, cfg.webhook_urls, secret, max_attempts=cfg.webhook_max_attempts, backoff_s=cfg.webhook_backoff_s,
            mask=mask, lease_s=cfg.webhook_lease_s,
        ).start()  # fmt: skip
    explainer = AlertExplainer(store, directory, baseline_s=24 * cfg.bucket_s, mask=mask)
    monitor = AlertMonitor(
        store, cfg.rules, cfg.policy, cfg.bucket_s, cfg.lookback_buckets, cfg.alert_scopes, explainer
    )
    service = SentimentService(classifier, tagger, directory, link, store, monitor, dispatcher, mask)

    def notify(alert: Any, change: str) -> None:
        service.alert_counts[(alert.rule, change)] += 1
        if dispatcher is not None:
            dispatcher.enqueue(alert, change)

    monitor.notify = notify
    return service


def fit_topic_head(topics: Sequence[Any], classifier: Any, cfg: SentimentSettings, home: Path) -> Any:
    """The topic head over ``classifier``'s sentence vectors, fitted on the labelled texts' train/tune
    parts, or None (with a warning) when there are no labels to fit on.

    Fitting (one encoder pass over the labels, cross-validated choices) takes seconds, so the head
    is kept under ``KGNLP_HOME/sentiment/topic_heads/``, keyed by the classifier, the labels and the
    topics file: a restart or another worker loads it instead.
    """
    import hashlib
    import json

    from apps.sentiment.topic_head import DEFAULT_LABELS, FIT_SPLITS, KeywordMatcher, TopicHead, load_labelled

    path = cfg.topic_labels or DEFAULT_LABELS
    if not hasattr(classifier, "predict_with_vectors") or not path.is_file():
        log.warning("topics by similarity: no labelled topics at %s (or the classifier gives no vectors)", path)
        return None
    names = [t.name for t in topics]
    matcher = KeywordMatcher([t.keywords for t in topics])
    labels_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    # the runtime too: ONNX Runtime's and torch's int8 give slightly different vectors
    fingerprint = [
        getattr(classifier, "name", ""), getattr(classifier, "runtime", "torch"), labels_sha,
        [t.__dict__ for t in topics], cfg.max_topics, 2,
    ]  # fmt: skip
    key = hashlib.sha256(json.dumps(fingerprint, default=list).encode()).hexdigest()[:20]
    cached = Path(home) / "sentiment" / "topic_heads" / f"{key}.npz"
    if cached.is_file():
        try:
            return TopicHead.load(cached, matcher, cfg.max_topics)
        except (OSError, ValueError, KeyError) as e:
            log.warning("refitting the topic head: cannot read %s: %s", cached, e)
    rows = [r for r in load_labelled(path, names) if r.split in FIT_SPLITS]
    t0 = time.perf_counter()
    _, vectors = classifier.predict_with_vectors([r.text for r in rows])
    head = TopicHead.fit(
        names, matcher, [r.text for r in rows], vectors, [r.topics for r in rows], max_topics=cfg.max_topics
    )
    head.report.update(labels=str(path), fit_s=round(time.perf_counter() - t0, 2))
    cached.parent.mkdir(parents=True, exist_ok=True)
    head.save(cached)
    log.info("topic head: %s", head.report)
    return head


def load(settings: Settings, services: Any) -> Component:
    """Build the sentiment service onto ``services.sentiment`` (``not_configured`` without a model)."""
    from apps.sentiment.classifier import load_latest

    if services.embedder is None:
        return Component("sentiment", "not_configured", {"hint": "needs the embedder (KGNLP_MODELS__LOAD_EMBEDDER)"})
    t0 = time.perf_counter()
    try:
        classifier = load_latest(
            settings.home, batch_size=settings.sentiment.batch_size, runtime=settings.sentiment.runtime
        )
    except NotFoundError as e:
        return Component("sentiment", "not_configured", {"hint": str(e)})
    services.sentiment = build_service(settings, services.embedder, services.graphs, classifier)
    s = services.sentiment
    return Component(
        "sentiment",
        "ready",
        {
            "classifier": classifier.info(),
            "topics": s.tagger.names,
            "topic_tagger": {k: v for k, v in s.topics_info().items() if k != "names"},
            "companies": len(s.directory),
            "rules": [r.name for r in settings.sentiment.rules],
            "webhooks": len(settings.sentiment.webhook_urls),
            "load_s": round(time.perf_counter() - t0, 2),
        },
    )


def open_offline(settings: Settings | None = None) -> SentimentService:
    """The service without the HTTP server, for ``kgnlp sentiment replay`` (loads the embedder and classifier).

    Raises:
        NotFoundError: no sentiment model is registered yet.
    """
    from apps.core.services import open_graph_registry
    from apps.core.settings import load_settings
    from apps.sentiment.classifier import load_latest
    from models.loading import load_sentence_embedder
    from models.provision import ModelCache

    settings = settings or load_settings()
    classifier = load_latest(
        settings.home, batch_size=settings.sentiment.batch_size, runtime=settings.sentiment.runtime
    )
    embedder = load_sentence_embedder(ModelCache(settings.home).resolve(settings.models.embedder))
    graphs = open_graph_registry(settings, embedder)
    svc = build_service(settings, embedder, graphs, classifier)
    svc.owned.append(graphs)
    return svc
