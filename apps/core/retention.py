"""Retention: delete stored conversations, hand-offs and sentiment events once they are older than
the ``retention`` settings allow, from a task that the API's lifespan runs.

Each API process runs its own task; the deletes are idempotent, so several workers (or replicas on
one PostgreSQL) only repeat each other's work.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from apps.core.settings import RetentionSettings

__all__ = ["expire_once", "run_periodically"]

log = logging.getLogger("kgnlp.retention")

DAY_S = 86_400.0


def expire_once(services: Any, cfg: RetentionSettings) -> dict[str, int]:
    """Delete what the retention settings no longer allow to keep (blocking).

    Args:
        services: ``apps.core.services.Services`` (apps that are not loaded are skipped).
        cfg: the retention settings.

    Returns:
        how many rows went, by kind (``sessions``, ``handoffs``, ``events``, ``deliveries``).
    """
    out: dict[str, int] = {}
    sessions = getattr(getattr(services, "customer_service", None), "sessions", None)
    if sessions is not None:
        idle_s = max(cfg.sessions_days * DAY_S, sessions.ttl_s)  # never what a conversation still uses
        out["sessions"] = sessions.expire(idle_s)
        out["handoffs"] = sessions.expire_handoffs(cfg.handoffs_days * DAY_S)
    store = getattr(getattr(services, "sentiment", None), "store", None)
    if store is not None:
        out["events"], out["deliveries"] = store.expire(cfg.events_days * DAY_S)
    return out


async def run_periodically(services: Any, cfg: RetentionSettings) -> None:
    """Run :func:`expire_once` now and every ``cfg.interval_s`` until cancelled; a failure is logged
    and the next run tries again (the service keeps serving)."""
    while True:
        try:
            deleted = await asyncio.to_thread(expire_once, services, cfg)
            if any(deleted.values()):
                log.info("retention: deleted %s", deleted)
        except Exception:
            log.exception("retention run failed; retrying in %.0f s", cfg.interval_s)
        await asyncio.sleep(cfg.interval_s)
