"""Prometheus series for one app: HTTP traffic, generation queue, tokens, model and adapter state.

Each app gets its own registry (tests build many apps in one process). Service state is read
at scrape time from ``app.state.services``, so nothing has to push updates. With
``--workers N`` every worker answers ``/metrics`` for itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["Metrics"]

# Seconds; wide because a generation can take a minute on a CPU.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class _ServiceCollector:
    """Reads the live ``Services`` object on every scrape."""

    def __init__(self, services: Callable[[], Any]) -> None:
        self.services = services

    def describe(self) -> list[Metric]:
        return []  # custom collector: nothing to check for clashes at registration

    def collect(self) -> Iterator[Metric]:
        services = self.services()
        if services is None:
            return
        status = GaugeMetricFamily(
            "kgnlp_component_ready", "1 if the component is loaded and ready", labels=["component", "status"]
        )
        for name, c in sorted(getattr(services, "components", {}).items()):
            status.add_metric([name, c.status], 1.0 if c.status == "ready" else 0.0)
        yield status

        queue = getattr(services, "generation", None)
        depth = GaugeMetricFamily("kgnlp_generation_queue_depth", "generations waiting or running")
        waiting = GaugeMetricFamily("kgnlp_generation_waiting", "generations waiting for a slot")
        running = GaugeMetricFamily("kgnlp_generation_running", "generations running")
        tokens = CounterMetricFamily("kgnlp_generated_tokens", "completion tokens generated")
        if queue is not None:
            depth.add_metric([], float(getattr(queue, "depth", 0)))
            waiting.add_metric([], float(getattr(queue, "waiting", 0)))
            running.add_metric([], float(getattr(queue, "running", 0)))
            tokens.add_metric([], float(getattr(queue, "completed_tokens", 0)))
        yield from (depth, waiting, running, tokens)

        adapters = GaugeMetricFamily(
            "kgnlp_adapter_loaded", "1 if the LoRA adapter is in memory, 0 if only registered", labels=["adapter"]
        )
        generator = getattr(services, "generator", None)
        if generator is not None:
            names = list(generator.adapter_names()) if hasattr(generator, "adapter_names") else []
            loaded_fn = getattr(getattr(generator, "adapters", None), "loaded", None)
            loaded = set(loaded_fn()) if callable(loaded_fn) else set(names)
            for name in sorted(names):
                adapters.add_metric([name], 1.0 if name in loaded else 0.0)
        yield adapters

        alerts = CounterMetricFamily(
            "kgnlp_sentiment_alerts", "sentiment alerts fired or resolved by this process", labels=["rule", "change"]
        )
        sentiment = getattr(services, "sentiment", None)
        for (rule, change), n in sorted(getattr(sentiment, "alert_counts", {}).items()):
            alerts.add_metric([rule, change], float(n))
        yield alerts


class Metrics:
    """The registry and the request series of one app.

    Args:
        services: returns the app's ``Services`` (or None before the lifespan ran).
    """

    def __init__(self, services: Callable[[], Any]) -> None:
        from prometheus_client import PlatformCollector, ProcessCollector

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kgnlp_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kgnlp_http_request_duration_seconds",
            "time from request to the last response byte, by route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("kgnlp_http_requests_in_flight", "requests being served", registry=self.registry)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(_ServiceCollector(services))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request.

        Args:
            method: HTTP method.
            route: the route template (``/kg/entities/{entity_id}``), never the raw path.
            status: response status.
            seconds: duration.
        """
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type.

        Returns:
            ``(body, content_type)``.
        """
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
