"""SQLAlchemy engines for the service's state (SQLite in WAL mode by default, any URL such as PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url

from kgnlp.errors import StoreError

__all__ = ["open_engine", "safe_url"]


def open_engine(url: str, metadata: MetaData, what: str) -> Engine:
    """Connect to ``url`` and create ``metadata``'s tables.

    SQLite gets WAL journaling (readers never block the writer; a crash keeps every
    committed transaction), foreign keys on, and ``synchronous=NORMAL``.

    Raises:
        StoreError: the database cannot be reached or the tables cannot be created.
    """
    try:
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

        metadata.create_all(engine)
    except Exception as e:  # sqlalchemy raises many kinds; all mean "store unavailable"
        raise StoreError(f"cannot open {what} {safe_url(url)}: {e}") from e
    return engine


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid url>"
