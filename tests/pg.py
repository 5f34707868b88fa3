"""A fresh PostgreSQL database per test, on the server named by ``KGNLP_TEST_POSTGRES_URL``.

``.ci/run`` starts a throw-away server (``.ci/postgres.sh``) and sets the variable; without it
the ``postgres``-marked tests skip, saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["ENV", "postgres_url"]

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
