"""API keys stored hashed in a small SQLite file (``KGNLP_HOME/keys.sqlite``, WAL mode).

A token is ``kgnlp_<id>_<secret>``: ``id`` is 12 hex characters used for lookup and display,
``secret`` 32 random bytes (URL-safe base64). Only ``sha256(token)`` is stored: a 256-bit random
secret cannot be guessed, so a slow KDF would add latency and no safety. Comparison is constant
time. Revocation is a timestamp; every request reads the store, so a revoke from the CLI takes
effect at once in every worker.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from kgnlp.errors import NotFoundError, ValidationError

__all__ = ["ApiKey", "KeyStore", "Scope", "parse_scopes"]

TOKEN_PREFIX = "kgnlp"
_ID_CHARS = 12
_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hint TEXT NOT NULL,
    hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    rate_limit TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
)
"""


class Scope(StrEnum):
    """What a key may do; each scope includes the ones below it (admin ⊇ write ⊇ read)."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    """Parse ``"read,write"`` (or a list of names) into scopes.

    Args:
        text: comma-separated scope names, or an iterable of names.

    Returns:
        the scopes (at least one).

    Raises:
        ValidationError: naming an unknown scope, or when none is given.
    """
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise ValidationError("at least one scope is needed: read, write or admin")
    try:
        return frozenset(Scope(n) for n in names)
    except ValueError as e:
        raise ValidationError(f"unknown scope in {names!r}; known: read, write, admin") from e


@dataclass(frozen=True)
class ApiKey:
    """One stored key, without its secret."""

    id: str
    name: str
    hint: str  # "kgnlp_<id>_ab…": enough to recognise a key, useless to use it
    scopes: frozenset[Scope]
    rate_limit: str | None
    created_at: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, needed: Scope) -> bool:
        """Whether this key's highest scope covers ``needed``."""
        return not self.revoked and max(s.rank for s in self.scopes) >= needed.rank


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_DUMMY_HASH = _hash("kgnlp_000000000000_dummy")


class KeyStore:
    """Create, list, revoke and verify API keys in one SQLite file.

    Args:
        path: the database file; created (mode 0600) on first use.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            # One connection shared by the event loop and worker threads, serialised by self._lock.
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    def create(self, name: str, scopes: str | Iterable[str], rate_limit: str | None = None) -> tuple[ApiKey, str]:
        """Make a new key.

        Args:
            name: a label for humans (who or what uses the key).
            scopes: ``"read,write"`` or a list of scope names.
            rate_limit: this key's own limit (``"10/second"``); default: the service's.

        Returns:
            the stored record and the token, which is shown once and never stored.

        Raises:
            ValidationError: unknown scope, empty name or invalid rate limit.
        """
        parsed = parse_scopes(scopes)
        if not name.strip():
            raise ValidationError("a key needs a name")
        if rate_limit is not None:
            from limits import parse_many

            try:
                parse_many(rate_limit)
            except ValueError as e:
                raise ValidationError(f"rate limit {rate_limit!r} is not like '10/second' or '100/minute'") from e
        key_id = secrets.token_hex(_ID_CHARS // 2)
        secret = secrets.token_urlsafe(32)
        token = f"{TOKEN_PREFIX}_{key_id}_{secret}"
        key = ApiKey(
            id=key_id,
            name=name.strip(),
            hint=f"{TOKEN_PREFIX}_{key_id}_{secret[:2]}…",
            scopes=parsed,
            rate_limit=rate_limit,
            created_at=time.time(),
        )
        with self._lock:
            self._db().execute(
                "INSERT INTO api_keys (id, name, hint, hash, scopes, rate_limit, created_at) VALUES (?,?,?,?,?,?,?)",
                (key.id, key.name, key.hint, _hash(token), _scopes_text(parsed), rate_limit, key.created_at),
            )
        return key, token

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first.

        Args:
            include_revoked: also list revoked keys.

        Returns:
            the records (no secrets, no hashes).
        """
        sql = "SELECT id, name, hint, scopes, rate_limit, created_at, revoked_at FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        with self._lock:
            rows = self._db().execute(sql + " ORDER BY created_at").fetchall()
        return [_record(r) for r in rows]

    def get(self, key_id: str) -> ApiKey:
        """One key by id.

        Raises:
            NotFoundError: no such key.
        """
        with self._lock:
            row = (
                self._db()
                .execute(
                    "SELECT id, name, hint, scopes, rate_limit, created_at, revoked_at FROM api_keys WHERE id = ?",
                    (key_id,),
                )
                .fetchone()
            )
        if row is None:
            raise NotFoundError(f"API key {key_id!r} not found")
        return _record(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (idempotent: the first revocation time is kept).

        Args:
            key_id: the key's id (the part after ``kgnlp_``), or a whole token.

        Returns:
            the revoked record.

        Raises:
            NotFoundError: no such key.
        """
        parts = _split(key_id)
        key_id = parts[0] if parts is not None else key_id
        with self._lock:
            self._db().execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
            )
        return self.get(key_id)

    def verify(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (malformed, unknown, wrong secret, revoked).

        Args:
            token: what the client sent after ``Bearer``.

        Returns:
            the key record, or None.
        """
        parts = _split(token)
        if parts is None:
            return None
        with self._lock:
            row = (
                self._db()
                .execute(
                    "SELECT id, name, hint, scopes, rate_limit, created_at, revoked_at, hash FROM api_keys "
                    "WHERE id = ?",
                    (parts[0],),
                )
                .fetchone()
            )
        # Compare even for unknown ids so that timing does not reveal which ids exist.
        ok = hmac.compare_digest(_hash(token), row[7] if row else _DUMMY_HASH)
        if row is None or not ok or row[6] is not None:
            return None
        return _record(row[:7])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(token: str) -> tuple[str, str] | None:
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != TOKEN_PREFIX or len(key_id) != _ID_CHARS or not secret or len(token) > 200:
        return None
    return key_id, secret


def _scopes_text(scopes: frozenset[Scope]) -> str:
    return ",".join(sorted((s.value for s in scopes), key=lambda v: _RANK[Scope(v)]))


def _record(row: tuple[Any, ...]) -> ApiKey:
    key_id, name, hint, scopes, rate_limit, created_at, revoked_at = row
    return ApiKey(key_id, name, hint, parse_scopes(scopes), rate_limit, created_at, revoked_at)
