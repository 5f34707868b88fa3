"""A fresh PostgreSQL database per test, on the server named by ``KGNLP_TEST_POSTGRES_URL``, and
an emptied Redis database, on the server named by ``KGNLP_TEST_REDIS_URL``.

``.ci/run`` starts throw-away servers (``.ci/postgres.sh``, ``.ci/redis.sh``) and sets the
variables; without one, the ``postgres``- or ``redis``-marked tests that need it skip, saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["ENV", "REDIS_ENV", "postgres_url", "redis_url"]

ENV = "KGNLP_TEST_POSTGRES_URL"


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL (``postgresql+psycopg://…``) of a new, empty database, dropped afterwards."""
    base = os.environ.get(ENV)
    if not base:
        pytest.skip(f"{ENV} is not set (.ci/run starts a PostgreSQL server and sets it)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"kgnlp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


REDIS_ENV = "KGNLP_TEST_REDIS_URL"


@pytest.fixture()
def redis_url() -> str:
    """The URL of the throw-away Redis named by ``KGNLP_TEST_REDIS_URL``, its database emptied
    (FLUSHDB) first, so that a rerun starts from no counts: never point it at a Redis you keep."""
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"{REDIS_ENV} is not set (.ci/run starts a Redis server with .ci/redis.sh and sets it)")
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()
    return url
