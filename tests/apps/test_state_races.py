"""Concurrent first writes to the SQL state: no writer fails, each row is stored once.

Two requests that both read "no row yet" and both insert used to collide on the primary or
unique key (an ``IntegrityError``, a 500). Run on SQLite here and on PostgreSQL when
``KGNLP_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apps.customer_service.sessions import SessionStore
from apps.sentiment.store import AlertRow, SentimentStore
from tests.pg import postgres_url

__all__ = ["postgres_url"]  # the fixture, re-exported for pytest

THREADS = 8


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _all_at_once(work: Callable[[int], None], n: int = THREADS) -> list[BaseException]:
    """Run ``work(i)`` in ``n`` threads released together; the exceptions they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            barrier.wait()
            work(i)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


@pytest.fixture()
def sessions(db_url: str) -> Iterator[SessionStore]:
    store = SessionStore(db_url, window=1000).open()
    yield store
    store.close()


def test_first_turns_of_one_session_in_parallel_all_succeed(sessions: SessionStore) -> None:
    for n in range(3):  # a fresh session each round: the race is on its first row
        sid = f"same-{n}"

        def turn(i: int, sid: str = sid) -> None:
            sessions.append(sessions.load(sid), f"q{i}", f"a{i}", None, failed=False)

        errors = _all_at_once(turn)
        assert not errors, errors
        turns = sessions.load(sid).turns
        assert sorted(t.content for t in turns if t.role == "user") == sorted(f"q{i}" for i in range(THREADS))


def test_first_turns_of_two_owners_on_one_id_in_parallel_stay_apart(sessions: SessionStore) -> None:
    """Two API keys racing on the same session id: each gets its own conversation, every turn kept."""

    def turn(i: int) -> None:
        sessions.append(sessions.load("same", f"key:k{i % 2}"), f"q{i}", f"a{i}", None, failed=False)

    errors = _all_at_once(turn)
    assert not errors, errors
    for k in range(2):
        turns = sessions.load("same", f"key:k{k}").turns
        assert sorted(t.content for t in turns if t.role == "user") == sorted(f"q{i}" for i in range(k, THREADS, 2))


def test_concurrent_upserts_of_one_alert_episode_store_it_once(db_url: str) -> None:
    store = SentimentStore(db_url).open()

    def alert(started: int, i: int) -> AlertRow:
        return AlertRow(
            id="", rule="neg_share", scope="company", key="co:AAPL", status="open", started=started,
            fired=started + 60, resolved=None, peak=0.5 + i / 100, limit=0.5, breach_buckets=1,
            explanation={"why": f"thread {i}"},
        )  # fmt: skip

    try:
        for started in (1000, 2000, 3000):  # a new episode each round: the race is on its first row
            changes: list[str | None] = []

            def evaluate(i: int, started: int = started, changes: list[str | None] = changes) -> None:
                changes.append(store.upsert_alert(alert(started, i))[1])

            errors = _all_at_once(evaluate)
            assert not errors, errors
            assert changes.count("alert.fired") == 1 and len(changes) == THREADS
            found = store.find_alert("neg_share", "company", "co:AAPL", started)
            assert found is not None and found.peak == pytest.approx(0.5 + (THREADS - 1) / 100)
        assert len(store.list_alerts()) == 3
    finally:
        store.close()


def test_stores_opened_at_once_on_a_new_database_all_open(db_url: str) -> None:
    """Workers and replicas starting together each create the tables they miss: none fails."""
    from apps.core.keystore import KeyStore

    opened: list[object] = []

    def open_all(i: int) -> None:
        stores = [SentimentStore(db_url).open(), SessionStore(db_url).open()]
        keys = KeyStore(db_url)
        keys.has_keys()
        opened.append(i)
        keys.close()
        for s in stores:
            s.close()

    assert _all_at_once(open_all) == []
    assert sorted(opened) == list(range(THREADS))  # type: ignore[type-var]


def test_a_stale_evaluation_does_not_reopen_a_resolved_alert(db_url: str) -> None:
    """Two replicas evaluate one episode on different views of the events: the one that saw it
    resolve reports it once; the late one, still seeing it open, neither reopens it nor lets the
    next evaluation resolve it a second time."""
    store = SentimentStore(db_url).open()

    def alert(status: str) -> AlertRow:
        resolved = 7200 if status == "resolved" else None
        return AlertRow("", "neg_share", "company", "co:AAPL", status, 0, 0, resolved, 0.6, 0.5, 1, {})

    try:
        changes = [store.upsert_alert(alert(s))[1] for s in ("open", "resolved", "open", "resolved")]
        assert changes == ["alert.fired", "alert.resolved", None, None]
        (stored,) = store.list_alerts()
        assert stored.status == "resolved" and stored.resolved == 7200
    finally:
        store.close()
