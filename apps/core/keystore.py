"""API keys stored hashed in the service's SQL database (table ``api_keys``).

By default the keys sit with the rest of the state (``KGNLP_DATABASE_URL``: PostgreSQL when
several replicas serve; else ``KGNLP_HOME/state.sqlite``), so a key created or revoked on one
replica is known to every other at its next request. ``auth.keys_path`` still names a separate
SQLite file (mode 0600) for a single host. A ``KGNLP_HOME/keys.sqlite`` from before is imported
once into a database that has no keys table yet.

A token is ``kgnlp_<id>_<secret>``: ``id`` is 12 hex characters used for lookup and display,
``secret`` 32 random bytes (URL-safe base64). Only ``sha256(token)`` is stored: a 256-bit random
secret cannot be guessed, so a slow KDF would add latency and no safety. Comparison is constant
time. Revocation is a timestamp; every request reads the store (one lookup by primary key), so a
revoke from the CLI or any replica takes effect at once in every worker and replica.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Float, MetaData, String, Table, Text, inspect, select, update
from sqlalchemy.engine import Engine

from apps.core.db import create_tables, insert_or_ignore, open_engine, safe_url
from kgnlp.errors import NotFoundError, StoreError, ValidationError

__all__ = ["ApiKey", "KeyStore", "Scope", "parse_scopes"]

TOKEN_PREFIX = "kgnlp"
_ID_CHARS = 12
_meta = MetaData()
api_keys = Table(
    "api_keys",
    _meta,
    Column("id", String(_ID_CHARS), primary_key=True),  # the lookup of every request
    Column("name", Text, nullable=False),
    Column("hint", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("rate_limit", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)
_COLUMNS = ("id", "name", "hint", "scopes", "rate_limit", "created_at", "revoked_at")

log = logging.getLogger("kgnlp.keys")


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
    """Create, list, revoke and verify API keys in a SQL database.

    Two ``KeyStore`` objects on one database (two workers, two replicas) see each other's keys and
    revocations at once: nothing is cached.

    Args:
        target: a SQLAlchemy URL (``postgresql+psycopg://…``, ``sqlite:///…``) or a SQLite file path
            (created, mode 0600, with its folder, on first use).
        legacy: an older ``keys.sqlite`` to import once, when ``target`` has no keys table yet.
    """

    def __init__(self, target: str | Path, legacy: Path | None = None) -> None:
        text = str(target)
        if "://" in text:
            self.url = text
            self.path: Path | None = Path(text.split(":///", 1)[1]) if text.startswith("sqlite:///") else None
        else:
            self.path = Path(text).expanduser()
            self.url = f"sqlite:///{self.path}"
        self.legacy = legacy
        self._engine: Engine | None = None

    @classmethod
    def for_settings(cls, settings: Any) -> KeyStore:
        """The service's store: ``auth.keys_path`` when set (a separate SQLite file), else the state
        database (``settings.db_url``), importing an older ``KGNLP_HOME/keys.sqlite`` once."""
        if settings.auth.keys_path is not None:
            return cls(settings.auth.keys_path)
        return cls(settings.db_url, legacy=Path(settings.home) / "keys.sqlite")

    def __repr__(self) -> str:
        return f"KeyStore({safe_url(self.url)})"

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            engine = open_engine(self.url, MetaData(), "key store")  # engine only; the table below
            try:
                existed = inspect(engine).has_table(api_keys.name)
                create_tables(_meta, engine)
                if not existed:
                    self._import_legacy(engine)
            except StoreError:
                engine.dispose()
                raise
            except Exception as e:
                engine.dispose()
                raise StoreError(f"cannot open key store {safe_url(self.url)}: {e}") from e
            self._engine = engine
        return self._engine

    def _import_legacy(self, engine: Engine) -> None:
        """Copy the rows of an older ``keys.sqlite`` (idempotent: ids already present are kept as they are)."""
        old = self.legacy
        if old is None or not old.is_file() or (self.path is not None and old.resolve() == self.path.resolve()):
            return
        con = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
        try:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='api_keys'").fetchone():
                return
            rows = con.execute(f"SELECT {', '.join(_COLUMNS)}, hash FROM api_keys").fetchall()
        finally:
            con.close()
        stmt = insert_or_ignore(engine.dialect.name, api_keys, ["id"])
        with engine.begin() as c:
            for r in rows:
                c.execute(stmt.values(dict(zip((*_COLUMNS, "hash"), r, strict=True))))
        log.warning(
            "imported %d API key(s) from %s into %s (revoked ones included); %s is no longer read",
            len(rows), old, safe_url(self.url), old,
        )  # fmt: skip

    def has_keys(self) -> bool:
        """Whether any active key exists (False when the store cannot be read)."""
        try:
            with self.engine.connect() as c:
                return c.scalar(select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)) is not None
        except Exception:
            log.debug("key store %s unreadable", safe_url(self.url), exc_info=True)
            return False

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
        with self.engine.begin() as c:
            c.execute(
                api_keys.insert().values(
                    id=key.id, name=key.name, hint=key.hint, hash=_hash(token), scopes=_scopes_text(parsed),
                    rate_limit=rate_limit, created_at=key.created_at,
                )
            )  # fmt: skip
        return key, token

    def list(self, include_revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first.

        Args:
            include_revoked: also list revoked keys.

        Returns:
            the records (no secrets, no hashes).
        """
        q = select(*(api_keys.c[n] for n in _COLUMNS))
        if not include_revoked:
            q = q.where(api_keys.c.revoked_at.is_(None))
        with self.engine.connect() as c:
            rows = c.execute(q.order_by(api_keys.c.created_at, api_keys.c.id)).all()
        return [_record(tuple(r)) for r in rows]

    def get(self, key_id: str) -> ApiKey:
        """One key by id.

        Raises:
            NotFoundError: no such key.
        """
        with self.engine.connect() as c:
            row = c.execute(select(*(api_keys.c[n] for n in _COLUMNS)).where(api_keys.c.id == key_id)).first()
        if row is None:
            raise NotFoundError(f"API key {key_id!r} not found")
        return _record(tuple(row))

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
        with self.engine.begin() as c:
            c.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        return self.get(key_id)

    def verify(self, token: str) -> ApiKey | None:
        """The active key a token belongs to, or None (malformed, unknown, wrong secret, revoked).

        Reads the database every time (one primary-key lookup), so a revocation made by any
        process is refused from the next request on.

        Args:
            token: what the client sent after ``Bearer``.

        Returns:
            the key record, or None.
        """
        parts = _split(token)
        if parts is None:
            return None
        with self.engine.connect() as c:
            row = c.execute(
                select(*(api_keys.c[n] for n in _COLUMNS), api_keys.c.hash).where(api_keys.c.id == parts[0])
            ).first()
        # Compare even for unknown ids so that timing does not reveal which ids exist.
        ok = hmac.compare_digest(_hash(token), row[7] if row else _DUMMY_HASH)
        if row is None or not ok or row[6] is not None:
            return None
        return _record(tuple(row[:7]))

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

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
