"""Per-key request rate limits (moving window, ``limits`` library).

The default storage is in process memory: with ``--workers N`` each worker counts on its own,
so the effective limit is N times the setting; point ``KGNLP_LIMITS__STORAGE_URI`` at Redis
(``redis://host:6379``) for one shared count (the ``redis`` client comes with the ``postgres`` extra).

Start-up checks the storage: a URI the ``limits`` library cannot use (unknown scheme, no ``redis``
client installed) or a Redis that does not answer PING is a :class:`~kgnlp.errors.ConfigurationError`
then, not a 500 on every request. A Redis that goes away *later* fails open: requests are let
through uncounted and a warning is logged (at most once a minute) until it answers again. Redis
calls time out after :data:`REDIS_TIMEOUT_S` unless the URI sets ``socket_timeout`` /
``socket_connect_timeout`` itself, so an unreachable host cannot stall the event loop for long.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any

__all__ = ["REDIS_TIMEOUT_S", "RateLimiter"]

log = logging.getLogger("kgnlp.ratelimit")

REDIS_TIMEOUT_S = 1.0
"""Connect and read timeout of the Redis client (URI query parameters override it)."""

_REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
_WARN_EVERY_S = 60.0


def _redact(uri: str) -> str:
    """``uri`` without its password, for messages and logs."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + netloc).geturl()
    except ValueError:
        return "<unparsable URI>"


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

    Raises:
        kgnlp.errors.ConfigurationError: a storage other than ``memory://`` that is unusable or
            does not answer (see :meth:`check`).
    """

    def __init__(self, rate: str, anonymous_rate: str | None = None, storage_uri: str = "memory://") -> None:
        self.rate = rate
        self.anonymous_rate = anonymous_rate
        self.storage_uri = storage_uri
        self._limiter: Any = None
        self._warned_at = -math.inf
        if not storage_uri.startswith("memory://"):  # a shared store: fail at start-up, not per request
            self.check()

    def _strategy(self) -> Any:
        if self._limiter is None:
            from limits.errors import ConfigurationError as LimitsConfigurationError
            from limits.storage import storage_from_string
            from limits.strategies import MovingWindowRateLimiter

            from kgnlp.errors import ConfigurationError

            options: dict[str, float] = {}
            if self.storage_uri.startswith(_REDIS_SCHEMES):
                options = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
            try:
                storage = storage_from_string(self.storage_uri, **options)
            except (LimitsConfigurationError, ValueError) as e:
                hint = " (pip install 'kgnlp[postgres]' brings the redis client)" if "redis" in str(e).lower() else ""
                raise ConfigurationError(
                    f"KGNLP_LIMITS__STORAGE_URI={_redact(self.storage_uri)!r} is not usable: {e}{hint}"
                ) from e
            self._limiter = MovingWindowRateLimiter(storage)
        return self._limiter

    def check(self) -> None:
        """Build the storage and make sure it answers (call at start-up).

        Raises:
            kgnlp.errors.ConfigurationError: the URI is unusable or the storage does not answer.
        """
        from kgnlp.errors import ConfigurationError

        if not self._strategy().storage.check():
            raise ConfigurationError(
                f"rate-limit storage {_redact(self.storage_uri)} does not answer (is Redis running there?); "
                "fix KGNLP_LIMITS__STORAGE_URI, or unset it to count in process memory"
            )

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
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "rate-limit storage %s failed, letting requests through uncounted until it answers: %s",
                    _redact(self.storage_uri),
                    e,
                )
        return None
