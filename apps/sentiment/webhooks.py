"""Alert webhooks: HMAC-signed POSTs, retried with exponential backoff, dead-lettered when they keep failing.

Deliveries are rows in the store before any attempt, so a restart resumes them. The
signature follows the Stripe scheme: header ``X-Kgnlp-Signature: t=<unix>,v1=<hex>`` where
``hex = HMAC-SHA256(secret, "<t>.<raw body>")``; receivers check it with :func:`verify`
and reject stale timestamps (replays). Without a secret the dispatcher warns once when it starts.

Receiver URLs often carry a credential in their path or query (``hooks.slack.com/services/…``):
logs name a receiver by scheme, host and port only (:func:`redact_url`), httpx's own request log
lines included.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from apps.sentiment.store import AlertRow, SentimentStore

__all__ = ["SIGNATURE_HEADER", "WebhookDispatcher", "redact_url", "sign", "verify"]

log = logging.getLogger("kgnlp.sentiment.webhooks")

SIGNATURE_HEADER = "X-Kgnlp-Signature"


def sign(secret: str, body: bytes, ts: int) -> str:
    """The signature header value for ``body`` sent at ``ts``."""
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: float = 300, now: float | None = None) -> bool:
    """Whether ``header`` is a valid, fresh signature of ``body`` (constant-time compare)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, ts), f"t={ts},v1={parts.get('v1', '')}")


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"


def redact_url(url: str) -> str:
    """``url`` without what may be a credential: ``scheme://host[:port]``, ``/…`` when it had a path or query."""
    origin = _origin(url)
    if origin is None:
        return "<invalid url>"
    parts = urlsplit(url)
    return origin + ("/…" if parts.path.strip("/") or parts.query or parts.fragment else "")


class _RedactReceivers(logging.Filter):
    """Rewrites httpx's ``HTTP Request: POST <url> …`` log lines to name a receiver by :func:`redact_url`."""

    def __init__(self, urls: Sequence[str]) -> None:
        super().__init__()
        self.origins = {o for o in map(_origin, urls) if o}

    def add(self, url: str) -> None:
        origin = _origin(url)
        if origin:
            self.origins.add(origin)

    def _safe(self, arg: object) -> object:
        if isinstance(arg, int | float):
            return arg
        text = str(arg)
        return redact_url(text) if "://" in text and _origin(text) in self.origins else arg

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._safe(a) for a in record.args)
        return True


class WebhookDispatcher:
    """Sends alert events to every configured URL from a background thread.

    Args:
        store: where deliveries are queued and their attempts recorded.
        urls: receiver URLs.
        secret: HMAC key (deliveries are unsigned without one).
        max_attempts: attempts before a delivery is dead-lettered.
        backoff_s: first retry delay; doubles each attempt up to ``max_backoff_s``.
        timeout_s: per-attempt HTTP timeout.
        mask: applied to the explanation's driving texts in every payload (PII masking), or None;
            an alert stored before masking was turned on is masked on its way out too.
        lease_s: how long a claimed delivery stays this dispatcher's (it must cover one attempt's
            ``timeout_s``); when the claimer dies, another dispatcher takes the delivery after that.
        idle_poll_s: how often an idle dispatcher reads the queue: deliveries that another process
            queued, or whose claimer died, are noticed within this.

    Every worker and replica (and ``kgnlp sentiment replay``) may run one over the same database:
    a dispatcher claims due deliveries atomically (:meth:`SentimentStore.claim_deliveries`), so each
    is POSTed by exactly one of them.
    """

    def __init__(
        self,
        store: SentimentStore,
        urls: Sequence[str],
        secret: str | None = None,
        max_attempts: int = 6,
        backoff_s: float = 2.0,
        max_backoff_s: float = 600.0,
        timeout_s: float = 5.0,
        mask: Callable[[str], str] | None = None,
        lease_s: float = 60.0,
        idle_poll_s: float = 5.0,
    ) -> None:
        self.store = store
        self.urls = list(urls)
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.mask = mask
        self.lease_s = max(lease_s, timeout_s + 1)
        self.idle_poll_s = idle_poll_s
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._log_filter = _RedactReceivers(self.urls)

    def enqueue(self, alert: AlertRow, event: str) -> None:
        """Queue ``event`` about ``alert`` for every URL (durably) and wake the sender."""
        data = asdict(alert)
        if self.mask is not None:
            from apps.sentiment.explain import mask_explanation

            data["explanation"] = mask_explanation(data["explanation"] or {}, self.mask)
        payload = {"event": event, "alert": data}
        for url in self.urls:
            self.store.enqueue_delivery(alert.id, url, event, payload)
        self._wake.set()

    def start(self) -> WebhookDispatcher:
        """Start the sender thread (once); warn when deliveries will go unsigned."""
        if self.urls and self._thread is None:
            if not self.secret:
                log.warning(
                    "webhooks are UNSIGNED: no secret is set (KGNLP_SENTIMENT__WEBHOOK_SECRET), so %d receiver(s) "
                    "(%s) cannot tell an alert from a forgery",
                    len(self.urls),
                    ", ".join(sorted({redact_url(u) for u in self.urls})),
                )
            self._thread = threading.Thread(target=self._run, name="kgnlp-webhooks", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None
        logging.getLogger("httpx").removeFilter(self._log_filter)

    def deliver_due(self, now: float | None = None) -> int:
        """Claim every delivery that is due and attempt it; returns how many were attempted."""
        due = self.store.claim_deliveries(self.owner, time.time() if now is None else now, self.lease_s)
        for d in due:
            self._attempt(d.id, d.url, d.event, d.payload, d.attempts)
        return len(due)

    def _attempt(self, delivery_id: int, url: str, event: str, payload: str, attempts: int) -> None:
        import httpx

        if self._client is None:
            logging.getLogger("httpx").addFilter(self._log_filter)  # its INFO line names the full URL
            self._client = httpx.Client(timeout=self.timeout_s)
        self._log_filter.add(url)  # a delivery queued under an earlier configuration too
        body = payload.encode()
        headers = {"Content-Type": "application/json", "X-Kgnlp-Event": event, "X-Kgnlp-Delivery": str(delivery_id)}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        error: str | None = None
        try:
            r = self._client.post(url, content=body, headers=headers)
            if 200 <= r.status_code < 300:
                self.store.record_attempt(delivery_id, ok=True, owner=self.owner)
                return
            error = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            error = f"{type(e).__name__}: {e}".replace(url, redact_url(url))
        n = attempts + 1
        if n >= self.max_attempts:
            log.warning("webhook delivery %s to %s dead after %d attempts: %s", delivery_id, redact_url(url), n, error)
            self.store.record_attempt(delivery_id, ok=False, error=error, owner=self.owner)
            return
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (n - 1))
        self.store.record_attempt(delivery_id, ok=False, error=error, retry_at=time.time() + delay, owner=self.owner)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                nxt = self.store.next_due()
            except Exception:  # keep the sender alive; the rows stay pending
                log.exception("webhook sender failed; retrying")
                nxt = time.time() + self.backoff_s
            wait = self.idle_poll_s if nxt is None else min(self.idle_poll_s, max(0.0, nxt - time.time()))
            self._wake.wait(timeout=wait)
            self._wake.clear()
