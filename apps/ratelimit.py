"""Per-key request rate limits (moving window, ``limits`` library).

The default storage is in process memory: with ``--workers N`` each worker counts on its own,
so the effective limit is N times the setting; point ``KGNLP_LIMITS__STORAGE_URI`` at Redis
(``redis://host:6379``) for one shared count.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any

__all__ = ["RateLimiter"]

log = logging.getLogger("kgnlp.ratelimit")


@functools.lru_cache(maxsize=256)
def _items(rate: str) -> tuple[Any, ...]:
    from limits import parse_many

    return tuple(parse_many(rate))


class RateLimiter:
    """Count requests per identity and say when one is over its limit.

    Args:
        rate: the default limit per key, e.g. ``"120/minute"`` or ``"10/second;1000/hour"``.
        anonymous_rate: the limit per client address for requests without a key; None: unlimited.
        storage_uri: a ``limits`` storage URI (``memory://``, ``redis://…``).
    """

    def __init__(self, rate: str, anonymous_rate: str | None = None, storage_uri: str = "memory://") -> None:
        self.rate = rate
        self.anonymous_rate = anonymous_rate
        self.storage_uri = storage_uri
        self._limiter: Any = None

    def _strategy(self) -> Any:
        if self._limiter is None:
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter

            self._limiter = MovingWindowRateLimiter(storage_from_string(self.storage_uri))
        return self._limiter

    def hit(self, identity: str, rate: str | None = None, anonymous: bool = False) -> int | None:
        """Count one request for ``identity``.

        Args:
            identity: what is limited (``key:<id>`` or ``addr:<ip>``).
            rate: this identity's own limit; default: the limiter's (anonymous or per-key).
            anonymous: the request carries no key (``anonymous_rate`` applies).

        Returns:
            None when allowed, else the whole seconds after which a retry can succeed (≥ 1).
        """
        rate = rate or (self.anonymous_rate if anonymous else self.rate)
        if not rate:
            return None
        limiter = self._strategy()
        try:
            for item in _items(rate):
                if not limiter.hit(item, identity):
                    reset = limiter.get_window_stats(item, identity).reset_time
                    return max(1, math.ceil(reset - time.time()))
        except Exception as e:  # a storage outage (Redis down) must not take the API down with it
            log.warning("rate-limit storage %s failed, letting the request through: %s", self.storage_uri, e)
        return None
