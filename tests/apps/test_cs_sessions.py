"""Sessions belong to the caller that made them (issue #19 item 4), over real HTTP.

A session id names a session of the caller's API key only: another key's session of the same id is
another conversation, and its slots never reach a different caller. Callers without a key cannot
name sessions: the server issues an unguessable id and they continue only that (anything else is a
404 that says nothing about other callers' sessions). A response sends back only the details that
its own message gave. The keyed app shares the real ``nogen_service``'s loaded services (and state
database), with auth on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.customer_service.schemas import is_session_id
from apps.customer_service.sessions import ANONYMOUS, LOCAL, SessionStore, owner_of_key, storage_key

ORDER = "where is my order #ORD-61734? my email is alice.liddell@example.org"


@pytest.fixture(scope="module")
def keyed(nogen_service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real customer-service pipeline behind a second app with auth on, and two write keys."""
    from apps.core.settings import load_settings
    from apps.main import create_app
    from tests.conftest import LiveServer

    root = tmp_path_factory.mktemp("cs-keys")
    settings = load_settings(
        home=nogen_service.services.settings.home,
        models={"load_generator": False},
        auth={"enabled": True, "keys_path": root / "keys.sqlite"},
        limits={"rate": "100000/minute"},
        retention={"enabled": False},
    )
    app = create_app(settings, services=nogen_service.services)  # not owned: the services stay open
    (a, token_a), (b, token_b) = (app.state.keys.create(name, "write") for name in ("cs-a", "cs-b"))
    with LiveServer(app) as live:
        yield {
            "url": live.url,
            "a": {"Authorization": f"Bearer {token_a}"},
            "b": {"Authorization": f"Bearer {token_b}"},
            "owner_a": owner_of_key(a.id),
            "owner_b": owner_of_key(b.id),
            "sessions": nogen_service.services.customer_service.sessions,
        }
    app.state.keys.close()


def _answer(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{url}/cs/answer", json=body, headers=headers or {}, timeout=120)


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


def _chat(url: str, user: str | None, headers: dict[str, str] | None = None, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": "customer-service", "messages": [{"role": "user", "content": ORDER}]}
    if user is not None:
        body["user"] = user
    return httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": stream}, headers=headers or {}, timeout=120)


# -- keys own their sessions -------------------------------------------------------------------------


def test_another_key_cannot_read_continue_or_delete_a_keys_session(keyed: dict[str, Any]) -> None:
    url, sessions = keyed["url"], keyed["sessions"]
    first = _ok(_answer(url, {"session_id": "alice", "message": ORDER}, keyed["a"]))
    assert first["session_id"] == "alice" and first["slots"]["order_id"] == "ORD-61734"
    # key B names the same id: its own, new conversation; nothing of A's comes back
    other = _answer(url, {"session_id": "alice", "message": "what details do you have about my order?"}, keyed["b"])
    body = _ok(other)
    assert body["slots"] == {} and body["known_slots"] == []
    for secret in ("ORD-61734", "alice.liddell@example.org", "61734"):
        assert secret not in other.text, secret
    assert httpx.delete(f"{url}/cs/sessions/alice", headers=keyed["b"], timeout=30).status_code == 204
    # A's conversation is intact: its slots, and both of its turns
    mine = sessions.load("alice", keyed["owner_a"])
    assert mine.slots == {"order_id": "ORD-61734"} and len(mine.turns) == 2
    assert not sessions.load("alice", keyed["owner_b"]).exists  # B deleted its own "alice" only
    again = _ok(_answer(url, {"session_id": "alice", "message": "when will it arrive?"}, keyed["a"]))
    assert again["known_slots"] == ["order_id"] and again["slots"] == {}  # remembered, not echoed
    assert len(sessions.load("alice", keyed["owner_a"]).turns) == 4


def test_the_same_id_under_two_keys_is_two_conversations(keyed: dict[str, Any]) -> None:
    url, sessions = keyed["url"], keyed["sessions"]
    _ok(_answer(url, {"session_id": "shared-7", "message": "I want to cancel my order ORD-70001"}, keyed["a"]))
    _ok(_answer(url, {"session_id": "shared-7", "message": "where is my order ORD-80002?"}, keyed["b"]))
    a, b = sessions.load("shared-7", keyed["owner_a"]), sessions.load("shared-7", keyed["owner_b"])
    assert a.slots == {"order_id": "ORD-70001"} and b.slots == {"order_id": "ORD-80002"}
    assert len(a.turns) == len(b.turns) == 2  # (stored texts are masked: ids as placeholders)
    assert a.turns[0].content.startswith("I want to cancel") and b.turns[0].content.startswith("where is my order")
    # an operator sees whose hand-off is whose
    _ok(_answer(url, {"session_id": "shared-7", "message": "I want to talk to a real person"}, keyed["b"]))
    handoffs = httpx.get(f"{url}/cs/handoffs", headers=keyed["b"], timeout=30).json()
    assert {"session_id": "shared-7", "owner": keyed["owner_b"]}.items() <= handoffs[0].items()


def test_a_keyed_caller_may_leave_the_id_to_the_server(keyed: dict[str, Any]) -> None:
    body = _ok(_answer(keyed["url"], {"message": ORDER}, keyed["a"]))
    assert is_session_id(body["session_id"]) and len(body["session_id"]) >= 32
    assert keyed["sessions"].load(body["session_id"], keyed["owner_a"]).exists


def test_two_turns_racing_on_one_keyed_session_both_succeed(keyed: dict[str, Any]) -> None:
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def turn(i: int) -> None:
        barrier.wait()
        codes.append(_answer(keyed["url"], {"session_id": "race-1", "message": f"where is order ORD-9000{i}?"},
                             keyed["a"]).status_code)  # fmt: skip

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert codes == [200, 200]
    assert len(keyed["sessions"].load("race-1", keyed["owner_a"]).turns) == 4


# -- callers without a key -----------------------------------------------------------------------------


def test_an_anonymous_first_turn_gets_a_server_issued_id_that_continues(nogen_service: Any) -> None:
    first = _ok(_answer(nogen_service.url, {"message": ORDER}))
    sid = first["session_id"]
    assert is_session_id(sid) and len(sid) >= 32 and first["slots"]["order_id"] == "ORD-61734"
    second = _ok(_answer(nogen_service.url, {"session_id": sid, "message": "how do I get a refund?"}))
    assert second["session_id"] == sid and second["known_slots"] == ["order_id"]
    # this turn gave no detail: none of the first turn's comes back (order id, email)
    assert second["slots"] == {}
    assert "alice.liddell@example.org" not in str(second) and "ORD-61734" not in str(second["slots"])
    stored = nogen_service.services.customer_service.sessions.load(sid, ANONYMOUS)
    assert len(stored.turns) == 4 and stored.slots == {"order_id": "ORD-61734"}


def test_an_anonymous_caller_cannot_name_or_guess_a_session(nogen_service: Any, keyed: dict[str, Any]) -> None:
    url = nogen_service.url
    _ok(_answer(keyed["url"], {"session_id": "victim-9", "message": ORDER}, keyed["a"]))
    taken = _answer(url, {"session_id": "victim-9", "message": "what is my order number?"})  # a key's id
    unknown = _answer(url, {"session_id": "nobody-xyz", "message": "what is my order number?"})
    for r in (taken, unknown):
        assert r.status_code == 404, r.text
        assert "unknown session" in r.json()["error"]["message"] and "61734" not in r.text
    # the same answer whether another caller has that id or nobody does
    assert taken.json()["error"]["message"].replace("victim-9", "X") == unknown.json()["error"]["message"].replace(
        "nobody-xyz", "X"
    )
    for user in ("victim-9", "nobody-xyz"):  # the OpenAI route: `user` is no way in either
        for stream in (False, True):
            r = _chat(url, user, stream=stream)
            assert r.status_code == 404 and "unknown session" in r.json()["error"]["message"], r.text
    # a delete without a key reaches no key's session
    assert httpx.delete(f"{url}/cs/sessions/victim-9", timeout=30).status_code == 204
    assert keyed["sessions"].load("victim-9", keyed["owner_a"]).slots == {"order_id": "ORD-61734"}
    # nothing was stored for the refused turns
    assert not keyed["sessions"].load("nobody-xyz", ANONYMOUS).exists


def test_an_anonymous_session_is_continued_on_the_openai_route(nogen_service: Any) -> None:
    """The web chat's way: ask the server for an id, then talk through /v1 with ``user`` set to it."""
    url = nogen_service.url
    assert "/cs/sessions" in httpx.get(f"{url}/chat", timeout=30).text
    made = httpx.post(f"{url}/cs/sessions", timeout=30)
    assert made.status_code == 201
    sid = made.json()["session_id"]
    r = _chat(url, sid, stream=True)
    assert r.status_code == 200 and '"order_id":"ORD-61734"' in r.text.replace(" ", "")
    follow = httpx.post(
        f"{url}/v1/chat/completions", timeout=120,
        json={"model": "customer-service", "user": sid, "messages": [{"role": "user", "content": "thanks, bye"}]},
    )  # fmt: skip
    extra = follow.json()["kgnlp"]
    assert extra["session_id"] == sid and extra["slots"] == {} and extra["known_slots"] == ["order_id"]
    assert len(nogen_service.services.customer_service.sessions.load(sid, ANONYMOUS).turns) == 4
    # no `user`: a one-off, nothing stored (as before)
    oneoff = _chat(url, None).json()["kgnlp"]
    assert oneoff["session_id"].startswith("anon~") and oneoff["slots"]["order_id"] == "ORD-61734"


def test_the_openai_route_with_a_key_names_sessions_of_that_key(keyed: dict[str, Any]) -> None:
    url, sessions = keyed["url"], keyed["sessions"]
    assert _chat(url, "oa-alice", keyed["a"]).status_code == 200
    streamed = _chat(url, "oa-alice", keyed["b"], stream=True)
    assert streamed.status_code == 200
    assert sessions.load("oa-alice", keyed["owner_a"]).slots == {"order_id": "ORD-61734"}
    assert len(sessions.load("oa-alice", keyed["owner_a"]).turns) == 2  # B's turn went to B's session
    assert len(sessions.load("oa-alice", keyed["owner_b"]).turns) == 2


@pytest.mark.parametrize("where", ["cs_answer", "cs_answer_keyed", "delete", "delete_keyed", "openai", "openai_keyed"])
def test_session_ids_with_a_trailing_newline_are_refused(nogen_service: Any, keyed: dict[str, Any], where: str) -> None:
    url, headers = (keyed["url"], keyed["a"]) if where.endswith("_keyed") else (nogen_service.url, {})
    if where.startswith("cs_answer"):
        r = _answer(url, {"session_id": "abc\n", "message": "hi"}, headers)
    elif where.startswith("delete"):
        r = httpx.delete(f"{url}/cs/sessions/abc%0A", headers=headers, timeout=30)
    else:
        r = _chat(url, "abc\n", headers)
    assert r.status_code == 422, r.text
    assert not is_session_id("abc\n") and is_session_id("abc") and not is_session_id("a" * 129)


# -- the store -------------------------------------------------------------------------------------------


def test_owners_partition_the_store(tmp_path: Path) -> None:
    store = SessionStore(f"sqlite:///{tmp_path / 's.sqlite'}").open()
    for owner, order in (("key:a", "A1"), ("key:b", "B2"), (ANONYMOUS, "C3"), (LOCAL, "D4")):
        conv = store.load("same", owner)
        assert not conv.exists and conv.owner == owner
        conv.slots = {"order_id": order}
        store.append(conv, f"q {order}", "a", None, failed=False)
        store.record_handoff("same", "complaint", f"h {order}", owner)
    assert [store.load("same", o).slots["order_id"] for o in ("key:a", "key:b", ANONYMOUS, LOCAL)] == [
        "A1", "B2", "C3", "D4"
    ]  # fmt: skip
    assert store.load("same").slots == {"order_id": "D4"}  # in-process callers: the local owner
    assert store.delete("same", "key:a") and not store.load("same", "key:a").exists
    assert {h["owner"] for h in store.handoffs()} == {"key:b", ANONYMOUS, LOCAL}
    assert store.load("same", "key:b").slots == {"order_id": "B2"}
    assert len(storage_key("key:x", "y" * 128)) == 64 and storage_key(LOCAL, "s1") == "s1"
    store.close()


def test_a_state_file_from_before_owners_opens_and_keeps_its_sessions_private(tmp_path: Path) -> None:
    """The tables as the previous release created them: ``open`` adds the owner columns; the old
    sessions (client-chosen ids, nobody's) are the operator's (CLI), not any HTTP caller's."""
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as c:
        c.executescript(
            """
            CREATE TABLE cs_sessions (id VARCHAR(128) NOT NULL PRIMARY KEY, created FLOAT NOT NULL,
                updated FLOAT NOT NULL, slots JSON NOT NULL, failures INTEGER NOT NULL);
            CREATE TABLE cs_turns (id INTEGER NOT NULL PRIMARY KEY, session_id VARCHAR(128) NOT NULL
                REFERENCES cs_sessions (id) ON DELETE CASCADE, role VARCHAR(16) NOT NULL, content TEXT NOT NULL,
                intent VARCHAR(64), ts FLOAT NOT NULL);
            CREATE TABLE cs_handoffs (id INTEGER NOT NULL PRIMARY KEY, session_id VARCHAR(128) NOT NULL,
                reason VARCHAR(64) NOT NULL, message TEXT NOT NULL, ts FLOAT NOT NULL);
            INSERT INTO cs_sessions VALUES ('alice', strftime('%s','now'), strftime('%s','now'),
                '{"order_id": "ORD-1"}', 0);
            INSERT INTO cs_turns VALUES (1, 'alice', 'user', 'where is ORD-1?', 'track_order', strftime('%s','now'));
            INSERT INTO cs_handoffs VALUES (1, 'alice', 'complaint', 'help', strftime('%s','now'));
            """
        )
    for _ in range(2):  # idempotent: a second open (another worker, a restart) changes nothing
        store = SessionStore(f"sqlite:///{db}").open()
        assert store.load("alice").slots == {"order_id": "ORD-1"}  # the operator's (LOCAL)
        for owner in (ANONYMOUS, owner_of_key("k1")):
            assert not store.load("alice", owner).exists
        assert store.handoffs()[0]["owner"] == LOCAL
        store.close()
    store = SessionStore(f"sqlite:///{db}").open()
    conv = store.load("alice", owner_of_key("k1"))
    store.append(conv, "hi", "hello", None, failed=False)
    assert not store.delete("bob", ANONYMOUS)
    store.delete("alice", owner_of_key("k1"))
    assert store.load("alice").slots == {"order_id": "ORD-1"} and len(store.handoffs()) == 1
    store.close()
    with sqlite3.connect(db) as c:
        assert [r[1] for r in c.execute("PRAGMA table_info(cs_sessions)")].count("owner") == 1


def test_the_pipeline_sends_back_only_the_turns_own_slots(tmp_path: Path) -> None:
    """Unmasked storage (``mask_pii_stored`` off) remembers the email too: it is still not echoed."""
    from apps.customer_service.pipeline import CustomerServicePipeline
    from kgnlp.errors import NotFoundError
    from tests.apps.test_customer_service import PROFILE, _Intents, _Retriever

    store = SessionStore(f"sqlite:///{tmp_path / 's.sqlite'}").open()  # no mask
    pipeline = CustomerServicePipeline(
        _Intents(), store, PROFILE, retriever=_Retriever("Track it in {{Order History}}.")
    )  # type: ignore[arg-type]
    first = asyncio.run(pipeline.answer("s", ORDER, owner="key:a"))
    assert first.slots == {"order_id": "ORD-61734", "email": "alice.liddell@example.org"}
    second = asyncio.run(pipeline.answer("s", "and when will it arrive?", owner="key:a"))
    assert second.slots == {} and second.known_slots == ["email", "order_id"]
    assert store.load("s", "key:a").slots["email"] == "alice.liddell@example.org"  # memory kept

    async def streamed() -> Any:
        result, deltas = await pipeline.stream("s", "thanks", owner="key:a")
        _ = [d async for d in deltas]
        return result

    assert asyncio.run(streamed()).slots == {}
    with pytest.raises(NotFoundError, match="unknown session"):
        asyncio.run(pipeline.answer("s", "hi", owner=ANONYMOUS))  # an id the server did not issue
    store.close()
