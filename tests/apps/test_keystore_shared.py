"""API keys in the shared SQL database: two ``KeyStore`` objects on one database are two replicas;
a key created on one works on the other and a revocation on one is refused by the other at once.
On SQLite and on PostgreSQL (``postgres`` marker); an older ``keys.sqlite`` is imported once."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from apps.core.keystore import KeyStore, Scope
from apps.core.settings import load_settings
from tests.pg import postgres_url

__all__ = ["postgres_url"]  # the fixture, re-exported for pytest


def _replicas_share_keys(url: str) -> None:
    with KeyStore(url) as a, KeyStore(url) as b:
        key, token = a.create("svc", "read,write", rate_limit="5/second")
        seen = b.verify(token)  # created on A, known on B at its next request
        assert seen == key and seen.allows(Scope.WRITE) and seen.rate_limit == "5/second"
        assert [k.id for k in b.list()] == [key.id]
        assert b.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
        a.revoke(key.id)
        assert b.verify(token) is None, "revoked on A: B refuses at once"
        assert b.get(key.id).revoked
        _, token2 = b.create("other", "admin")
        assert a.verify(token2) is not None
        assert {k.name for k in a.list(include_revoked=False)} == {"other"}


def test_replicas_share_keys_sqlite(tmp_path: Path) -> None:
    _replicas_share_keys(f"sqlite:///{tmp_path / 'state.sqlite'}")
    assert ((tmp_path / "state.sqlite").stat().st_mode & 0o077) == 0  # owner-only


@pytest.mark.postgres
def test_replicas_share_keys_postgres(postgres_url: str) -> None:
    _replicas_share_keys(postgres_url)


def test_separate_file_keeps_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "keys.sqlite"
    with KeyStore(path) as store:
        _, token = store.create("x", "read")
        assert store.verify(token) is not None
    for f in path.parent.glob("keys.sqlite*"):
        assert (f.stat().st_mode & 0o077) == 0, f


def _old_keys_file(path: Path) -> tuple[str, str]:
    """A keys.sqlite as the earlier store wrote it: one active and one revoked key."""
    with KeyStore(path) as old:  # same table layout as before
        key, token = old.create("legacy", "admin")
        gone, _ = old.create("gone", "read")
        old.revoke(gone.id)
    return key.id, token


def _import_once(url: str, home: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_id, token = _old_keys_file(home / "keys.sqlite")
    settings = load_settings(home=home, database_url=url)
    with caplog.at_level(logging.WARNING, logger="kgnlp.keys"), KeyStore.for_settings(settings) as a:
        found = a.verify(token)
        assert found is not None and found.id == key_id
        assert len(a.list()) == 2 and len(a.list(include_revoked=False)) == 1
        a.revoke(key_id)
    assert any("imported 2 API key(s)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    # a restart (or another replica): no second import
    with caplog.at_level(logging.WARNING, logger="kgnlp.keys"), KeyStore.for_settings(settings) as b:
        assert b.verify(token) is None, "a revocation made after the import stays"
        assert len(b.list()) == 2
    assert not any("imported" in r.getMessage() for r in caplog.records)


def test_old_keys_file_imported_once_sqlite(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _import_once(f"sqlite:///{tmp_path / 'state.sqlite'}", tmp_path, caplog)


@pytest.mark.postgres
def test_old_keys_file_imported_once_postgres(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _import_once(postgres_url, tmp_path, caplog)


def test_keys_path_setting_is_a_separate_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.sqlite"
    settings = load_settings(home=tmp_path, auth={"keys_path": path})
    with KeyStore.for_settings(settings) as store:
        store.create("x", "read")
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT count(*) FROM api_keys").fetchone() == (1,)
    assert not (tmp_path / "state.sqlite").exists()
