"""SQLAlchemy engines for the service's state (SQLite in WAL mode by default, any URL such as PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, event
from sqlalchemy.engine import Engine, make_url

from kgnlp.errors import StoreError

__all__ = ["create_tables", "insert_or_ignore", "open_engine", "private_sqlite_file", "safe_url"]


def open_engine(url: str, metadata: MetaData, what: str) -> Engine:
    """Connect to ``url`` and create ``metadata``'s tables.

    SQLite gets WAL journaling (readers never block the writer; a crash keeps every
    committed transaction), foreign keys on, and ``synchronous=NORMAL``; its file is made
    private (see :func:`private_sqlite_file`).

    Raises:
        StoreError: the database cannot be reached or the tables cannot be created.
    """
    try:
        private_sqlite_file(url)
        engine = create_engine(url, future=True, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.close()

        create_tables(metadata, engine)
    except Exception as e:  # sqlalchemy raises many kinds; all mean "store unavailable"
        raise StoreError(f"cannot open {what} {safe_url(url)}: {e}") from e
    return engine


def create_tables(metadata: MetaData, engine: Engine, attempts: int = 3) -> None:
    """``metadata.create_all`` that tolerates another process creating the same tables at once.

    Two workers or replicas starting together on a new database both see a table missing and
    both create it; the loser's ``CREATE TABLE`` fails ("already exists", or PostgreSQL's unique
    violation on its catalogue). Checking again then finds the table, so the call is retried.
    """
    import time

    from sqlalchemy.exc import DatabaseError

    for attempt in range(attempts):
        try:
            metadata.create_all(engine)
            return
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1 * (attempt + 1))


def private_sqlite_file(url: str) -> None:
    """Create a SQLite database file readable by its owner only (mode 0600), or tighten an existing one.

    The state database holds conversations and events; the default umask would leave it (and
    SQLite's ``-wal``/``-shm`` files, which copy the database file's mode) world-readable.
    Other URLs, in-memory and ``file:`` URI databases are left alone.

    Raises:
        OSError: the file cannot be created (e.g. its folder is missing).
    """
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return
    path = Path(u.database)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # no O_TRUNC: an existing database is kept
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if p.exists():
            with contextlib.suppress(PermissionError):  # another owner's file: theirs to protect
                p.chmod(0o600)


def insert_or_ignore(dialect: str, table: Table, key: Sequence[str]) -> Any:
    """An ``INSERT … ON CONFLICT (key) DO NOTHING`` for SQLite or PostgreSQL.

    Concurrent writers of the same new row then all succeed (one inserts, the others skip)
    instead of racing a read-then-insert into a unique violation. Add ``.returning(…)`` to
    learn whether this writer inserted (psycopg reports no ``rowcount`` for it).

    Args:
        dialect: ``engine.dialect.name``.
        table: the table to insert into; add ``.values(…)`` to the result.
        key: the columns of the primary key or unique constraint that decides a conflict.

    Raises:
        StoreError: another database (only SQLite and PostgreSQL are supported for state).
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=list(key))
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(key))
    raise StoreError(f"unsupported state database {dialect!r}: use SQLite or PostgreSQL")


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid url>"


def add_missing_columns(
    engine: Any, metadata: Any, columns: Mapping[str, Sequence[str]], default: str | None = None
) -> None:
    """``ALTER TABLE … ADD COLUMN`` what an older database lacks (``create_all`` only creates missing
    tables): ``columns`` maps a table to the names its ``metadata`` declares; ``default`` (SQL
    text) makes the column ``NOT NULL DEFAULT`` it, None nullable. Idempotent; a worker that loses
    the race to another one's ALTER re-checks."""
    from sqlalchemy import inspect, text

    for table, names in columns.items():
        for name in names:
            if name in {c["name"] for c in inspect(engine).get_columns(table)}:
                continue
            column = metadata.tables[table].c[name]
            ddl = f"ALTER TABLE {table} ADD COLUMN {name} {column.type.compile(engine.dialect)}"
            if default is not None:
                ddl += f" NOT NULL DEFAULT {default}"
            try:
                with engine.begin() as c:
                    c.execute(text(ddl))
            except Exception:
                if name not in {c["name"] for c in inspect(engine).get_columns(table)}:
                    raise
